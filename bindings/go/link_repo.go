//go:build !llmux_pkgconfig && !llmux_static

package llmux

// Default linking: the header and library of the llmux checkout this module
// lives in. target/release is searched before target/debug, both by the
// linker and at run time (rpath). To use a library installed elsewhere,
// put its directory first with CGO_LDFLAGS (searched before these paths):
//
//	CGO_LDFLAGS="-L/opt/llmux/lib -Wl,-rpath,/opt/llmux/lib" go build
//
// or build with -tags llmux_pkgconfig (see link_pkgconfig.go).

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -L${SRCDIR}/../../target/release -L${SRCDIR}/../../target/debug -lllmux
#cgo LDFLAGS: -Wl,-rpath,${SRCDIR}/../../target/release -Wl,-rpath,${SRCDIR}/../../target/debug
*/
import "C"
