package llmux

import "time"

// How events reach requests: there is no dispatcher goroutine. A goroutine
// that waits for its own request takes the poller role when it is free
// (core.role, a one-token channel), calls llmux_poll itself and routes
// every event it gets to its request's queue; when its own request has
// news it puts the token back. Goroutines without the role wait on their
// own request's signal or on the token, whichever comes first, so one of
// the waiting goroutines is always polling: an event never sits unpolled
// while somebody waits for it. A single waiting request costs no hand-off
// between goroutines at all.

// leadPollMs bounds one llmux_poll of the poller, so it notices a stop
// request (a closed Stream, a cancelled context, a deadline) within this
// time even when no event comes. Cancellations normally end the poll at
// once: they produce the request's terminal event.
const leadPollMs = 50

// await blocks until cl has news (true) or stop1 or stop2 is closed
// (false); nil channels never fire. While it waits it polls for everybody
// when the poller role is free.
func (c *core) await(cl *call, stop1, stop2 <-chan struct{}) bool {
	for {
		select {
		case <-cl.signal:
			return true
		case <-stop1:
			return false
		case <-stop2:
			return false
		case <-c.role:
			c.lead(cl.hasNews, stop1, stop2)
			if cl.hasNews() {
				select { // the signal is stale now
				case <-cl.signal:
				default:
				}
				return true
			}
		}
	}
}

// lead polls as the holder of the poller role until ready() holds, a stop
// channel is closed or the Router stops polling; then it puts the token
// back, except after a stop of the Router (nobody polls again).
func (c *core) lead(ready func() bool, stop1, stop2 <-chan struct{}) {
	for !ready() && !closed(stop1) && !closed(stop2) {
		if !c.pollOnce(leadPollMs) {
			return // the Router stopped polling: the token retires with us
		}
	}
	c.role <- struct{}{}
}

// pollOnce polls llmux once (the caller holds the role) and routes what
// came. It reports false once the Router has stopped polling.
// Routing happens under the engine lock too, so Close, which takes it for
// writing, never gives up on a request whose terminal event is being routed.
func (c *core) pollOnce(timeoutMs int32) bool {
	c.cmu.RLock()
	if c.stop.Load() || c.eng == nil {
		c.cmu.RUnlock()
		return false
	}
	evs, err := c.buf.poll(c.eng, timeoutMs, c.evs[:0])
	if len(evs) > 0 {
		c.route(evs)
	}
	c.cmu.RUnlock()
	clear(evs)
	c.evs = evs
	if err != nil {
		time.Sleep(10 * time.Millisecond) // not expected; do not spin
	}
	return true
}

// waitDrained waits up to limit for drained to close, polling while the
// role is free (Close: the cancelled requests' terminal events must be
// polled even when nobody waits for them).
func (c *core) waitDrained(drained chan struct{}, limit time.Duration) {
	expired := make(chan struct{})
	timer := time.AfterFunc(limit, func() { close(expired) })
	defer timer.Stop()
	ready := func() bool { return closed(drained) }
	for !closed(drained) && !closed(expired) {
		select {
		case <-drained:
		case <-expired:
		case <-c.role:
			c.lead(ready, expired, nil)
		}
	}
}

// closed reports whether ch is closed; a nil channel never is.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
