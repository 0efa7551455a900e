//go:build llmux_dev

package llmux

// -tags llmux_dev links the library of the llmux checkout this module lives
// in, for working on llmux itself (run-tests.sh, examples/go):
// target/debug (what `cargo build` just made) is searched before
// target/release, both by the linker and at run time (rpath), so such
// binaries break after `cargo clean`. Programs
// outside the checkout use the default (pkg-config) build instead.

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -L${SRCDIR}/../../target/debug -L${SRCDIR}/../../target/release -lllmux
#cgo LDFLAGS: -Wl,-rpath,${SRCDIR}/../../target/debug -Wl,-rpath,${SRCDIR}/../../target/release
*/
import "C"
