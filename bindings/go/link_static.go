//go:build llmux_static && !llmux_dev

package llmux

// -tags llmux_static links libllmux.a through `pkg-config llmux-static`
// (installed by scripts/install.sh next to llmux.pc): llmux is inside the Go
// binary, which needs no libllmux.so at run time.

/*
#cgo pkg-config: llmux-static
*/
import "C"
