// Command stream starts a mock upstream fleet (llmux-fleet), routes one
// streaming chat request through llmux and prints the text as it arrives,
// then the routing record: the first provider answers 503, llmux fails over
// to the second.
//
//	cd examples/go && go run -tags llmux_dev ./stream [-fleet path/to/llmux-fleet]
//
// The fleet binary is taken from -fleet, else $LLMUX_FLEET, else
// target/{debug,release}/llmux-fleet in the first parent directory that has
// one (build it with `cargo build -p llmux-fleet`).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	llmux "github.com/llmux/llmux/bindings/go"
)

func main() {
	fleetFlag := flag.String("fleet", "", "path to the llmux-fleet binary")
	flag.Parse()
	if err := run(*fleetFlag); err != nil {
		fmt.Fprintln(os.Stderr, "stream:", err)
		os.Exit(1)
	}
}

func run(fleetPath string) error {
	fleetPath, err := findFleet(fleetPath)
	if err != nil {
		return err
	}
	urls, stop, err := startFleet(fleetPath, "primary", "backup")
	if err != nil {
		return err
	}
	defer stop()

	config := fmt.Sprintf(`{
	  "providers": [
	    {"slug": "primary", "protocol": "openai", "base_url": "%s/v1", "api_key": "sk-demo"},
	    {"slug": "backup",  "protocol": "openai", "base_url": "%s/v1", "api_key": "sk-demo"}
	  ],
	  "models": [
	    {"slug": "demo/chat", "endpoints": [
	      {"provider": "primary", "upstream_model": "chat-large", "price": {"prompt": 1.0, "completion": 2.0}},
	      {"provider": "backup",  "upstream_model": "chat-small", "price": {"prompt": 0.5, "completion": 1.0}}
	    ]}
	  ]
	}`, urls["primary"], urls["backup"])
	router, err := llmux.New([]byte(config))
	if err != nil {
		return err
	}
	defer router.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := map[string]any{
		"model":    "demo/chat",
		"messages": []map[string]string{{"role": "user", "content": "Say hello."}},
		// Try primary, then backup.
		"provider": map[string]any{"routing": map[string]any{"type": "order", "providers": []string{"primary", "backup"}}},
		// Tell the mock fleet: primary answers 503, chunks arrive every 50 ms.
		"mock": map[string]any{"chunk_delay_ms": 50, "servers": map[string]any{"primary": map[string]any{"status": 503}}},
	}
	stream, err := router.ChatCompletionStream(ctx, req)
	if err != nil {
		return err
	}
	defer stream.Close()

	fmt.Print("text: ")
	for chunk, err := range stream.Chunks() {
		if err != nil {
			var apiErr *llmux.APIError
			if errors.As(err, &apiErr) {
				return fmt.Errorf("request failed with HTTP %d (%s): %s", apiErr.Status, apiErr.Type, apiErr.Message)
			}
			return err
		}
		fmt.Print(llmux.ChunkText(chunk))
	}
	fmt.Println()

	rt := stream.Routing()
	fmt.Printf("served by: %s (provider %s, upstream model %s)\n", rt.Endpoint, rt.Provider, rt.UpstreamModel)
	for i, a := range rt.Attempts {
		status := "-"
		if a.Status != nil {
			status = fmt.Sprint(*a.Status)
		}
		fmt.Printf("attempt %d: %s %s status=%s %.1f ms", i+1, a.Endpoint, a.Outcome, status, a.ElapsedMs)
		if a.Error != nil {
			fmt.Printf(" (%s)", *a.Error)
		}
		fmt.Println()
	}
	if rt.FirstTokenMs != nil {
		fmt.Printf("first token: %.1f ms\n", *rt.FirstTokenMs)
	}
	if rt.Usage != nil {
		fmt.Printf("usage: %d prompt + %d completion tokens\n", rt.Usage.PromptTokens, rt.Usage.CompletionTokens)
	}
	if rt.CostUSD != nil {
		fmt.Printf("cost: $%.8f\n", *rt.CostUSD)
	}
	return nil
}

// findFleet resolves the llmux-fleet binary.
func findFleet(path string) (string, error) {
	if path == "" {
		path = os.Getenv("LLMUX_FLEET")
	}
	if path != "" {
		return path, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		for _, profile := range []string{"debug", "release"} {
			p := filepath.Join(dir, "target", profile, "llmux-fleet")
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("llmux-fleet not found: build it with `cargo build -p llmux-fleet`, or pass -fleet or set LLMUX_FLEET")
		}
		dir = parent
	}
}

// startFleet runs llmux-fleet with one healthy server per name and returns
// their base URLs; stop closes its stdin, which makes it exit.
func startFleet(path string, names ...string) (map[string]string, func(), error) {
	type server struct {
		Name     string         `json:"name"`
		Behavior map[string]any `json:"behavior"`
	}
	var spec struct {
		Servers []server `json:"servers"`
	}
	for _, n := range names {
		spec.Servers = append(spec.Servers, server{Name: n, Behavior: map[string]any{}})
	}
	cfg, err := json.Marshal(spec)
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(path, "--config", string(cfg), "--exit-on-stdin-eof")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("starting %s: %w", path, err)
	}
	stop := func() {
		stdin.Close()
		cmd.Wait()
	}
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("reading the fleet's listing: %w", err)
	}
	go io.Copy(io.Discard, stdout)
	var listing struct {
		Servers []struct {
			Name    string `json:"name"`
			BaseURL string `json:"base_url"`
		} `json:"servers"`
	}
	if err := json.Unmarshal(line, &listing); err != nil {
		stop()
		return nil, nil, fmt.Errorf("fleet listing %q: %w", line, err)
	}
	urls := map[string]string{}
	for _, s := range listing.Servers {
		urls[s.Name] = s.BaseURL
	}
	return urls, stop, nil
}
