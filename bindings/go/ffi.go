package llmux

// The only file that talks to C. Every wrapper copies what it needs out of
// C memory before returning and frees what llmux allocated; Go memory is
// handed to C only for the duration of a call (llmux copies its inputs) and
// never contains Go pointers.

/*
#include <stdlib.h>
#include "llmux.h"
*/
import "C"

import (
	"runtime"
	"unsafe"
)

// Event kinds and protocols, from llmux.h.
const (
	kindChunk = uint32(C.LLMUX_EVENT_KIND_CHUNK)
	kindDone  = uint32(C.LLMUX_EVENT_KIND_DONE)
	kindError = uint32(C.LLMUX_EVENT_KIND_ERROR)

	protoOpenAI    = uint32(C.LLMUX_PROTOCOL_OPENAI)
	protoAnthropic = uint32(C.LLMUX_PROTOCOL_ANTHROPIC)
	protoResponses = uint32(C.LLMUX_PROTOCOL_RESPONSES)
	protoGemini    = uint32(C.LLMUX_PROTOCOL_GEMINI) // Google Gemini generateContent
)

// pollCapacity is how many events one llmux_poll call may return.
const pollCapacity = 64

// takeString copies and frees a string llmux allocated.
func takeString(s *C.char) string {
	if s == nil {
		return ""
	}
	out := C.GoString(s)
	C.llmux_string_free(s)
	return out
}

// bytesArg returns a pointer to b for the duration of a C call (nil for an
// empty or nil slice: llmux reports a NULL argument). b holds no Go pointers.
func bytesArg(b []byte) *C.char {
	if len(b) == 0 {
		return nil
	}
	return (*C.char)(unsafe.Pointer(&b[0]))
}

func cVersion() string {
	return C.GoString(C.llmux_version())
}

func cResultText(code ResultCode) string {
	return C.GoString(C.llmux_result_text(C.uint32_t(code)))
}

func cEngineNew(config []byte) (*C.llmux_engine, error) {
	var eng *C.llmux_engine
	var msg *C.char
	rc := C.llmux_engine_new(bytesArg(config), C.size_t(len(config)), &eng, &msg)
	runtime.KeepAlive(config)
	if rc != C.LLMUX_RESULT_OK {
		return nil, newError(ResultCode(rc), takeString(msg))
	}
	return eng, nil
}

func cEngineNewFromFile(path string) (*C.llmux_engine, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var eng *C.llmux_engine
	var msg *C.char
	rc := C.llmux_engine_new_from_file(cpath, &eng, &msg)
	if rc != C.LLMUX_RESULT_OK {
		return nil, newError(ResultCode(rc), takeString(msg))
	}
	return eng, nil
}

func cEngineFree(eng *C.llmux_engine) {
	C.llmux_engine_free(eng)
}

func cSubmit(eng *C.llmux_engine, protocol uint32, body []byte) (uint64, error) {
	var id C.uint64_t
	var msg *C.char
	rc := C.llmux_submit(eng, C.uint32_t(protocol), bytesArg(body), C.size_t(len(body)), &id, &msg)
	runtime.KeepAlive(body)
	if rc != C.LLMUX_RESULT_OK {
		return 0, newError(ResultCode(rc), takeString(msg))
	}
	return uint64(id), nil
}

// cSubmitTraced is cSubmit through llmux_submit_traced: the request's span
// is a child of the W3C traceparent tp (NUL-terminated copy).
func cSubmitTraced(eng *C.llmux_engine, protocol uint32, body []byte, tp string) (uint64, error) {
	ctp := C.CString(tp)
	defer C.free(unsafe.Pointer(ctp))
	var id C.uint64_t
	var msg *C.char
	rc := C.llmux_submit_traced(eng, C.uint32_t(protocol), bytesArg(body), C.size_t(len(body)), ctp, &id, &msg)
	runtime.KeepAlive(body)
	if rc != C.LLMUX_RESULT_OK {
		return 0, newError(ResultCode(rc), takeString(msg))
	}
	return uint64(id), nil
}

func cCancel(eng *C.llmux_engine, id uint64) ResultCode {
	return ResultCode(C.llmux_cancel(eng, C.uint64_t(id)))
}

func cWakeup(eng *C.llmux_engine) {
	C.llmux_wakeup(eng)
}

func cStats(eng *C.llmux_engine) ([]byte, error) {
	var out *C.char
	rc := C.llmux_stats(eng, &out)
	if rc != C.LLMUX_RESULT_OK {
		C.llmux_string_free(out)
		return nil, newError(ResultCode(rc), "")
	}
	return []byte(takeString(out)), nil
}

// rawEvent is an event copied into Go memory.
type rawEvent struct {
	id   uint64
	kind uint32
	data []byte
}

// pollBuffer is a C array of llmux_event, used by the poller of the moment.
type pollBuffer struct {
	events *C.llmux_event
}

func newPollBuffer() *pollBuffer {
	size := C.size_t(pollCapacity) * C.size_t(unsafe.Sizeof(C.llmux_event{}))
	p := (*C.llmux_event)(C.calloc(1, size))
	if p == nil {
		panic("llmux: out of memory")
	}
	return &pollBuffer{events: p}
}

func (b *pollBuffer) free() {
	C.free(unsafe.Pointer(b.events))
	b.events = nil
}

// poll waits up to timeoutMs (negative: until an event or a wakeup) and
// returns the events copied into Go memory; their C data is freed.
func (b *pollBuffer) poll(eng *C.llmux_engine, timeoutMs int32, out []rawEvent) ([]rawEvent, error) {
	var n C.size_t
	rc := C.llmux_poll(eng, b.events, C.size_t(pollCapacity), C.int32_t(timeoutMs), &n)
	if rc != C.LLMUX_RESULT_OK {
		return out, newError(ResultCode(rc), "")
	}
	evs := unsafe.Slice(b.events, pollCapacity)[:n]
	for i := range evs {
		out = append(out, rawEvent{
			id:   uint64(evs[i].request_id),
			kind: uint32(evs[i].kind),
			data: C.GoBytes(unsafe.Pointer(evs[i].data), C.int(evs[i].data_len)),
		})
	}
	C.llmux_events_free(b.events, n)
	return out, nil
}

func cHealthExport(eng *C.llmux_engine) ([]byte, error) {
	var out *C.char
	rc := C.llmux_health_export(eng, &out)
	if rc != C.LLMUX_RESULT_OK {
		C.llmux_string_free(out)
		return nil, newError(ResultCode(rc), "")
	}
	return []byte(takeString(out)), nil
}

func cHealthImport(eng *C.llmux_engine, data []byte) (int, error) {
	var restored C.size_t
	var msg *C.char
	rc := C.llmux_health_import(eng, bytesArg(data), C.size_t(len(data)), &restored, &msg)
	runtime.KeepAlive(data)
	if rc != C.LLMUX_RESULT_OK {
		return 0, newError(ResultCode(rc), takeString(msg))
	}
	return int(restored), nil
}

func cEngineReload(eng *C.llmux_engine, config []byte) ([]byte, error) {
	var report, msg *C.char
	rc := C.llmux_engine_reload(eng, bytesArg(config), C.size_t(len(config)), &report, &msg)
	runtime.KeepAlive(config)
	if rc != C.LLMUX_RESULT_OK {
		C.llmux_string_free(report)
		return nil, newError(ResultCode(rc), takeString(msg))
	}
	return []byte(takeString(report)), nil
}
