//go:build !llmux_dev && !llmux_static

package llmux

// Default linking: the header and libllmux.so that `pkg-config llmux` names,
// as scripts/install.sh installs them (PREFIX/lib/pkgconfig/llmux.pc). Builds
// work from anywhere and do not depend on a llmux checkout or its target/
// directory. Outside the default library paths, run the program with
// LD_LIBRARY_PATH=PREFIX/lib, or build with -tags llmux_static.

/*
#cgo pkg-config: llmux
*/
import "C"
