package llmux

import (
	"context"
	"encoding/json"
	"iter"
	"sync"
	"time"
)

// Stream is a streaming request in progress. Read it with Next / Chunk /
// Err, or with a range over Chunks. Its methods are not safe for concurrent
// use, except Close, which may be called from any goroutine to abort a
// Next that is waiting.
//
// A stream delivers zero or more chunks and then ends exactly once: Err is
// nil after a successful end, and Routing reports who served it (also after
// most failures). Close it when you stop reading early; a stream read to
// its end needs no Close.
type Stream struct {
	r       *Router // keeps the Router (and its engine) alive while streaming
	cl      *call
	ctx     context.Context
	closeCh chan struct{}
	once    sync.Once

	chunk   json.RawMessage
	err     error
	routing *Routing
	done    bool
}

// ID is the llmux request id.
func (s *Stream) ID() uint64 { return s.cl.id }

// Next waits for the next chunk and reports whether there is one. It
// returns false once the stream has ended; then Err says why.
func (s *Stream) Next() bool {
	if s.done {
		return false
	}
	select {
	case <-s.closeCh:
		s.interrupt(ErrStreamClosed)
		return false
	default:
	}
	for {
		ev, failure, ok := s.cl.take()
		if ok {
			if failure != nil {
				s.finish(nil, failure)
				return false
			}
			switch ev.kind {
			case kindChunk:
				s.chunk = ev.data
				return true
			case kindDone:
				var rt *Routing
				d, err := decodeDone(ev.data)
				if err == nil {
					rt, err = parseRouting(d.Routing)
				}
				s.finish(rt, err)
				return false
			case kindError:
				e := s.cl.apiError(ev.data)
				var err error = e
				if e.IsCancelled() {
					// Cancelled by our context or Close: report that, not
					// llmux's echo of it.
					if ctxErr := s.ctx.Err(); ctxErr != nil {
						err = ctxErr
					} else if s.closed() {
						err = ErrStreamClosed
					}
				}
				s.finish(e.Routing, err)
				return false
			}
		}
		if !s.r.core.await(s.cl, s.ctx.Done(), s.closeCh) {
			if s.closed() {
				s.interrupt(ErrStreamClosed)
			} else {
				s.interrupt(s.ctx.Err())
			}
			return false
		}
	}
}

// Chunk is the chunk the last successful Next read: an OpenAI
// chat.completion.chunk or an Anthropic stream event, as JSON. It stays
// valid after later calls to Next.
func (s *Stream) Chunk() json.RawMessage { return s.chunk }

// Err is nil while the stream runs and after it ended successfully;
// otherwise an *APIError (the request failed), ctx.Err() (its context was
// cancelled or timed out), ErrStreamClosed (Close ended it) or an error
// wrapping ErrClosed (the Router was closed).
func (s *Stream) Err() error { return s.err }

// Routing is the routing record of the ended stream: endpoint, attempts,
// first-token latency, usage and cost. Nil before the end, and when the
// end never reported one.
func (s *Stream) Routing() *Routing { return s.routing }

// Chunks ranges over the stream's chunks. If the stream fails, the last
// pair has a nil chunk and the error; exactly one such pair, never more.
// Breaking out of the loop closes (cancels) the stream.
//
//	for chunk, err := range stream.Chunks() {
//		if err != nil { return err }
//		fmt.Print(llmux.ChunkText(chunk))
//	}
func (s *Stream) Chunks() iter.Seq2[json.RawMessage, error] {
	return func(yield func(json.RawMessage, error) bool) {
		for s.Next() {
			if !yield(s.Chunk(), nil) {
				s.Close()
				return
			}
		}
		if s.err != nil {
			yield(nil, s.err)
		}
	}
}

// Text reads the rest of the stream and returns the text it adds up to
// (see ChunkText), with the stream's error.
func (s *Stream) Text() (string, error) {
	var b []byte
	for s.Next() {
		b = append(b, ChunkText(s.chunk)...)
	}
	return string(b), s.err
}

// Close cancels the request if it has not ended; the next Next (or the one
// waiting) returns false and Err returns ErrStreamClosed. Idempotent; safe
// from any goroutine; always returns nil.
func (s *Stream) Close() error {
	s.once.Do(func() {
		close(s.closeCh)
		s.r.core.cancel(s.cl.id)
	})
	return nil
}

func (s *Stream) closed() bool {
	select {
	case <-s.closeCh:
		return true
	default:
		return false
	}
}

// interrupt cancels the request and waits briefly for its terminal event,
// for the routing record; the stream then ends with err.
func (s *Stream) interrupt(err error) {
	s.r.core.cancel(s.cl.id)
	expired := make(chan struct{})
	timer := time.AfterFunc(cancelGrace, func() { close(expired) })
	defer timer.Stop()
	for {
		ev, failure, ok := s.cl.take()
		if ok {
			if failure != nil {
				break
			}
			if ev.kind == kindChunk {
				continue
			}
			var d struct {
				Routing json.RawMessage `json:"routing"`
			}
			if json.Unmarshal(ev.data, &d) == nil {
				rt, _ := parseRouting(d.Routing)
				s.finish(rt, err)
				return
			}
			break
		}
		if s.r.core.await(s.cl, expired, nil) {
			continue
		}
		s.cl.abandon()
		break
	}
	s.finish(nil, err)
}

func (s *Stream) finish(rt *Routing, err error) {
	s.done = true
	s.chunk = nil
	s.routing = rt
	s.err = err
}
