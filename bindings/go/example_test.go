package llmux

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestStreamExample builds examples/go/stream (its own module, with a
// replace directive pointing here) and runs it against the fleet binary.
func TestStreamExample(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program; skipped with -short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	dir, err := filepath.Abs(filepath.Join("..", "..", "examples", "go"))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "stream")
	build := exec.Command(goBin, "build", "-o", bin, "./stream")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./stream in %s: %v\n%s", dir, err, out)
	}
	run := exec.Command(bin)
	run.Env = append(os.Environ(), "LLMUX_FLEET="+fleetPath)
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("stream example: %v\n%s", err, out)
	}
	for _, want := range []string{
		"text: Hello from backup.\n",
		"served by: backup/default (provider backup, upstream model chat-small)",
		"attempt 1: primary/default server_error status=503",
		"attempt 2: backup/default success status=200",
		"usage: 10 prompt + 5 completion tokens",
		"cost: $",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
