//go:build llmux_dev

package llmux

// -tags llmux_dev links the library of the llmux checkout this module lives
// in, for working on llmux itself (run-tests.sh, examples/go):
// target/release is searched before target/debug, both by the linker and at
// run time (rpath), so such binaries break after `cargo clean`. Programs
// outside the checkout use the default (pkg-config) build instead.

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -L${SRCDIR}/../../target/release -L${SRCDIR}/../../target/debug -lllmux
#cgo LDFLAGS: -Wl,-rpath,${SRCDIR}/../../target/release -Wl,-rpath,${SRCDIR}/../../target/debug
*/
import "C"
