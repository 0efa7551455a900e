package llmux

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestHostBench measures what the Go binding adds over a raw-socket
// HTTP/1.1 client to the same mock, interleaved in one run (outside CI:
// set LLMUX_BENCH_GO=1; LLMUX_BENCH_GO_JSON=path writes the case as JSON).
// scripts/bench.sh runs it against the release library and fleet.
func TestHostBench(t *testing.T) {
	if os.Getenv("LLMUX_BENCH_GO") == "" {
		t.Skip("a benchmark: set LLMUX_BENCH_GO=1")
	}
	threads := 1 // LLMUX_BENCH_GO_THREADS=0: host-driven (the waiting goroutine drives the I/O)
	if v, err := strconv.Atoi(os.Getenv("LLMUX_BENCH_GO_THREADS")); err == nil {
		threads = v
	}
	r, err := New(testConfig(map[string]any{"worker_threads": threads}))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	u, _ := url.Parse(fleetURLs["a"])
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rd := bufio.NewReader(conn)
	up := []byte(`{"model":"up-a","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16,"stream":false}`)
	raw := func() float64 {
		start := time.Now()
		fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nhost: %s\r\nauthorization: Bearer bench\r\n"+
			"content-type: application/json\r\ncontent-length: %d\r\n\r\n", u.Host, len(up))
		conn.Write(up)
		n := -1
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			line = strings.TrimSpace(line)
			if line == "" {
				break
			}
			if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "content-length") {
				n, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		if n < 0 {
			t.Fatal("the mock answered without content-length")
		}
		io.CopyN(io.Discard, rd, int64(n))
		return float64(time.Since(start).Nanoseconds()) / 1e3
	}
	req := map[string]any{"model": "test/model", "max_tokens": 16,
		"messages": []map[string]any{{"role": "user", "content": "Say hello."}},
		"provider": map[string]any{"routing": map[string]any{"type": "order", "providers": []string{"a"}}}}
	ctx := context.Background()
	viaLLMux := func() float64 {
		start := time.Now()
		resp, err := r.ChatCompletion(ctx, req)
		if err != nil || resp == nil {
			t.Fatal(err)
		}
		return float64(time.Since(start).Nanoseconds()) / 1e3
	}
	// The C ABI alone, called from Go: the encoded request submitted, then
	// llmux_poll until its terminal event, no JSON work in Go. What it adds
	// over the raw socket is the floor of what the binding adds.
	body, _ := encodeRequest(req, false)
	viaC := func() float64 {
		start := time.Now()
		c := r.core
		<-c.role // the bench is the only caller: the role is free
		defer func() { c.role <- struct{}{} }()
		c.cmu.RLock()
		defer c.cmu.RUnlock()
		id, err := cSubmit(c.eng, protoOpenAI, body)
		if err != nil {
			t.Fatal(err)
		}
		for {
			evs, err := c.buf.poll(c.eng, 1000, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range evs {
				if ev.id == id && ev.kind != kindChunk {
					return float64(time.Since(start).Nanoseconds()) / 1e3
				}
			}
		}
	}
	for i := 0; i < 300; i++ {
		raw()
		viaLLMux()
		viaC()
	}
	n := 2004 // a multiple of 6
	var a, b, cc []float64
	arms := []func(){
		func() { a = append(a, viaLLMux()) },
		func() { b = append(b, raw()) },
		func() { cc = append(cc, viaC()) },
	}
	// Rounds cycle through all six orders, so no arm always follows
	// another (which would find llmux's code and data warm).
	orders := [6][3]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}
	for i := 0; i < n; i++ {
		for _, k := range orders[i%6] {
			arms[k]()
		}
	}
	p := func(v []float64, q float64) float64 {
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		return s[int(q*float64(len(s)-1)+0.5)]
	}
	var blocks []float64
	for i := 0; i < 10; i++ {
		lo, hi := i*n/10, (i+1)*n/10
		blocks = append(blocks, p(a[lo:hi], 0.5)-p(b[lo:hi], 0.5))
	}
	sort.Float64s(blocks)
	added := p(a, 0.5) - p(b, 0.5)
	cAdded := p(cc, 0.5) - p(b, 0.5)
	c := map[string]any{
		"case":        "go_added_c1",
		"description": "Go Router.ChatCompletion vs a raw-socket HTTP/1.1 client in Go to the same mock, and the C ABI called from Go (no JSON work in Go), interleaved",
		"metrics": map[string]any{
			"samples": n, "worker_threads": threads, "llmux_p50_us": p(a, 0.5), "raw_socket_p50_us": p(b, 0.5),
			"added_p50_us": added, "added_p99_us": p(a, 0.99) - p(b, 0.99),
			"added_p50_block_min_us": blocks[0], "added_p50_block_median_us": p(blocks, 0.5),
			"added_p50_block_max_us":     blocks[len(blocks)-1],
			"c_abi_p50_us":               p(cc, 0.5),
			"c_abi_added_p50_us":         cAdded,
			"c_abi_added_p99_us":         p(cc, 0.99) - p(b, 0.99),
			"added_over_c_abi_p50_ratio": added / cAdded,
		},
		"checks": []map[string]any{{"figure": "added p50 (target: within 2x of C's added p50)",
			"value": fmt.Sprintf("%.1f us", added), "target": "<= 2x C", "pass": nil},
			{"figure": "added p50 / the C ABI's added p50 from Go, same run, both over the raw socket",
				"value": fmt.Sprintf("%.2f (%.1f / %.1f us)", added/cAdded, added, cAdded), "target": "<= 2",
				"pass": added <= 2*cAdded}},
	}
	out, _ := json.Marshal(c)
	t.Log(string(out))
	if path := os.Getenv("LLMUX_BENCH_GO_JSON"); path != "" {
		list, _ := json.Marshal([]any{c})
		if err := os.WriteFile(path, list, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
