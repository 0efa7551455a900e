//go:build llmux_static && !llmux_pkgconfig

package llmux

// -tags llmux_static links libllmux.a from the checkout (release first, then
// debug) into the Go binary: no shared library needed at run time.

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -L${SRCDIR}/../../target/release -L${SRCDIR}/../../target/debug -l:libllmux.a -lpthread -ldl -lm
*/
import "C"
