//go:build llmux_pkgconfig

package llmux

// -tags llmux_pkgconfig takes the compile and link flags from
// `pkg-config llmux` (a llmux.pc on PKG_CONFIG_PATH); nothing in this
// checkout is used. See README.md for a sample llmux.pc.

/*
#cgo pkg-config: llmux
*/
import "C"
