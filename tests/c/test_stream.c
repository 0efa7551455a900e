/*
 * test_stream: the happy paths of the llmux C ABI, against real mock
 * upstreams (llmux-fleet).
 *
 * usage: test_stream BASE_URL [BASE_URL...]
 *   (or env LLMUX_TEST_BASE_URLS="url1,url2"). Each base URL is a mock
 *   OpenAI-compatible server; provider i is "p<i>" with base_url <url>/v1.
 * env LLMUX_TEST_LIGHT=1 keeps request counts small (used under valgrind).
 *
 * Exits 0 and prints "test_stream: N checks passed" when everything holds;
 * otherwise prints the failing line to stderr and exits 1.
 */
#define _POSIX_C_SOURCE 200809L

#include "llmux.h"
#include "test_util.h"

#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 8

static int g_nurls;
static char **g_urls;

/* ---------------------------------------------------------------- helpers */

/* A growable string. */
typedef struct {
    char *p;
    size_t len, cap;
} buf;

static void buf_add(buf *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        size_t room = b->cap - b->len;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? room : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            fprintf(stderr, "vsnprintf failed\n");
            exit(1);
        }
        if (b->p && (size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
        b->p = np;
        b->cap = cap;
    }
}

/*
 * The catalog: providers p0..pN-1 (one per mock server); model "demo/chat"
 * served by all of them, model "demo/solo" served only by p0.
 */
static char *build_config(void) {
    buf b = {0};
    buf_add(&b, "{\"providers\":[");
    for (int i = 0; i < g_nurls; i++)
        buf_add(&b, "%s{\"slug\":\"p%d\",\"protocol\":\"openai\",\"base_url\":\"%s/v1\"}",
                i ? "," : "", i, g_urls[i]);
    buf_add(&b, "],\"models\":[{\"slug\":\"demo/chat\",\"endpoints\":[");
    for (int i = 0; i < g_nurls; i++)
        buf_add(&b,
                "%s{\"provider\":\"p%d\",\"upstream_model\":\"mock-%d\","
                "\"price\":{\"prompt\":1.0,\"completion\":2.0}}",
                i ? "," : "", i, i);
    buf_add(&b, "]},{\"slug\":\"demo/solo\",\"endpoints\":[{\"provider\":\"p0\","
                "\"upstream_model\":\"solo\",\"price\":{\"prompt\":0.5,\"completion\":1.5}}]}],"
                "\"timeouts\":{\"connect_ms\":20000,\"first_token_ms\":60000,"
                "\"idle_ms\":60000,\"total_ms\":300000},"
                "\"health\":{\"explore_ratio\":0.0}}");
    return b.p;
}

static llmux_engine *new_engine(void) {
    char *cfg = build_config();
    llmux_engine *e = NULL;
    char *err = NULL;
    llmux_result rc = llmux_engine_new(cfg, strlen(cfg), &e, &err);
    CHECKF(rc == LLMUX_RESULT_OK, "engine_new: %u %s: %s", (unsigned)rc,
           llmux_result_text(rc), err ? err : "(no message)");
    CHECK(e != NULL);
    CHECK(err == NULL);
    free(cfg);
    return e;
}

static uint64_t submit(const llmux_engine *e, const char *model, int stream,
                       const char *extra) {
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                     "\"stream\":%s%s%s}",
                     model, stream ? "true" : "false", extra ? "," : "", extra ? extra : "");
    CHECK(n > 0 && (size_t)n < sizeof req);
    uint64_t id = 0;
    char *err = NULL;
    llmux_result rc = llmux_submit(e, LLMUX_PROTOCOL_OPENAI, req, (size_t)n, &id, &err);
    CHECKF(rc == LLMUX_RESULT_OK, "submit: %u %s: %s", (unsigned)rc, llmux_result_text(rc),
           err ? err : "(no message)");
    CHECK(id != 0);
    CHECK(err == NULL);
    return id;
}

/* Every event's data is NUL-terminated JSON of data_len bytes. */
static void check_event_shape(const llmux_event *ev) {
    CHECK(ev->data != NULL);
    CHECKF(strlen(ev->data) == ev->data_len, "data_len %zu, strlen %zu", ev->data_len,
           strlen(ev->data));
    CHECKF(ev->data_len >= 2 && ev->data[0] == '{' && ev->data[ev->data_len - 1] == '}',
           "not a JSON object: %s", ev->data);
    CHECKF(ev->kind == LLMUX_EVENT_KIND_CHUNK || ev->kind == LLMUX_EVENT_KIND_DONE ||
               ev->kind == LLMUX_EVENT_KIND_ERROR,
           "unknown kind %u", (unsigned)ev->kind);
}

typedef struct {
    int chunks;
    int terminals;
    llmux_event_kind kind; /* kind of the terminal */
    char *terminal;        /* strdup of the terminal's data */
    int chunks_ok;         /* every chunk was a chat.completion.chunk */
} outcome;

static void outcome_free(outcome *o) {
    free(o->terminal);
    o->terminal = NULL;
}

/* Accounts one event of request `id` into `o`. */
static void account(outcome *o, const llmux_event *ev) {
    check_event_shape(ev);
    if (ev->kind == LLMUX_EVENT_KIND_CHUNK) {
        CHECKF(o->terminals == 0, "chunk after the terminal event: %s", ev->data);
        o->chunks++;
        if (!contains(ev->data, "chat.completion.chunk"))
            o->chunks_ok = 0;
    } else {
        o->terminals++;
        o->kind = ev->kind;
        free(o->terminal);
        o->terminal = strdup(ev->data);
    }
}

/*
 * Drains events of request `id` (there must be no other request producing
 * events) until its terminal event arrives, then keeps listening for
 * `linger_ms` to make sure nothing follows it.
 */
static outcome drain(const llmux_engine *e, uint64_t id, int linger_ms) {
    outcome o = {0};
    o.chunks_ok = 1;
    llmux_event evs[BATCH];
    double deadline = now_s() + patience_s();
    while (o.terminals == 0) {
        CHECKF(now_s() < deadline, "request %" PRIu64 " did not end in time", id);
        size_t n = 12345;
        CHECK_RC(llmux_poll(e, evs, BATCH, 250, &n), LLMUX_RESULT_OK);
        CHECK(n <= BATCH);
        for (size_t i = 0; i < n; i++) {
            CHECKF(evs[i].request_id == id, "event for unexpected id %" PRIu64,
                   evs[i].request_id);
            account(&o, &evs[i]);
        }
        llmux_events_free(evs, n);
        for (size_t i = 0; i < n; i++)
            CHECK(evs[i].data == NULL);
        llmux_events_free(evs, n); /* freeing twice is harmless */
    }
    if (linger_ms > 0) {
        size_t n = 0;
        CHECK_RC(llmux_poll(e, evs, BATCH, linger_ms, &n), LLMUX_RESULT_OK);
        CHECKF(n == 0, "%zu event(s) after the terminal event, first: %s", n,
               n ? evs[0].data : "");
    }
    CHECK(o.terminals == 1);
    return o;
}

/* ------------------------------------------------------------------ tests */

static void test_version(void) {
    const char *v = llmux_version();
    CHECK(v != NULL);
    CHECKF(strcmp(v, LLMUX_VERSION) == 0, "llmux_version() = %s, header says %s", v,
           LLMUX_VERSION);
    char mmp[64];
    snprintf(mmp, sizeof mmp, "%d.%d.%d", LLMUX_VERSION_MAJOR, LLMUX_VERSION_MINOR,
             LLMUX_VERSION_PATCH);
    CHECKF(strcmp(mmp, LLMUX_VERSION) == 0, "%s vs %s", mmp, LLMUX_VERSION);
    CHECK(llmux_version() == v); /* static */
}

static void check_served_by_known_endpoint(const char *data) {
    int found = 0;
    char needle[64];
    for (int i = 0; i < g_nurls && !found; i++) {
        snprintf(needle, sizeof needle, "\"endpoint\":\"p%d/default\"", i);
        found = contains(data, needle);
    }
    CHECKF(found, "no served endpoint id in %s", data);
}

static void test_stream_request(const llmux_engine *e) {
    uint64_t id = submit(e, "demo/chat", 1, NULL);
    outcome o = drain(e, id, 100);
    CHECKF(o.kind == LLMUX_EVENT_KIND_DONE, "terminal: %s", o.terminal);
    CHECKF(o.chunks >= 5, "only %d chunks", o.chunks);
    CHECK(o.chunks_ok);
    CHECK(contains(o.terminal, "\"type\":\"done\""));
    CHECK(contains(o.terminal, "\"routing\""));
    check_served_by_known_endpoint(o.terminal);
    CHECK(!contains(o.terminal, "\"response\"")); /* only for non-streaming */
    outcome_free(&o);

    /* The single-endpoint model: exactly that endpoint serves. */
    id = submit(e, "demo/solo", 1, NULL);
    o = drain(e, id, 0);
    CHECKF(o.kind == LLMUX_EVENT_KIND_DONE, "terminal: %s", o.terminal);
    CHECK(o.chunks_ok && o.chunks >= 5);
    CHECKF(contains(o.terminal, "\"endpoint\":\"p0/default\""), "%s", o.terminal);
    outcome_free(&o);
}

static void test_non_stream_request(const llmux_engine *e) {
    uint64_t id = submit(e, "demo/chat", 0, NULL);
    outcome o = drain(e, id, 100);
    CHECKF(o.kind == LLMUX_EVENT_KIND_DONE, "terminal: %s", o.terminal);
    CHECK(o.chunks == 0);
    CHECKF(contains(o.terminal, "\"response\""), "%s", o.terminal);
    CHECK(contains(o.terminal, "\"chat.completion\""));
    CHECK(contains(o.terminal, "Hello from"));
    CHECK(contains(o.terminal, "\"routing\""));
    check_served_by_known_endpoint(o.terminal);
    outcome_free(&o);
}

/* A game loop: poll with timeout 0 once per "frame". */
static void test_game_loop(const llmux_engine *e) {
    uint64_t id = submit(e, "demo/chat", 1, "\"mock\":{\"chunk_delay_ms\":5}");
    outcome o = {0};
    o.chunks_ok = 1;
    llmux_event evs[BATCH];
    long frames = 0, empty_frames = 0;
    double deadline = now_s() + patience_s();
    while (o.terminals == 0) {
        CHECKF(now_s() < deadline, "game loop: no terminal after %ld frames", frames);
        size_t n = 99;
        double t0 = now_s();
        CHECK_RC(llmux_poll(e, evs, BATCH, 0, &n), LLMUX_RESULT_OK);
        double took = now_s() - t0;
        if (!g_light)
            CHECKF(took < 0.5, "poll with timeout 0 took %.3f s", took);
        for (size_t i = 0; i < n; i++) {
            CHECK(evs[i].request_id == id);
            account(&o, &evs[i]);
        }
        llmux_events_free(evs, n);
        if (n == 0)
            empty_frames++;
        frames++;
        sleep_ms(2); /* "render the frame" */
    }
    CHECKF(o.kind == LLMUX_EVENT_KIND_DONE, "%s", o.terminal);
    CHECK(o.chunks >= 5 && o.chunks_ok);
    CHECKF(empty_frames > 0, "frames %ld: poll(0) never came back empty?", frames);
    outcome_free(&o);
}

/* An event loop: wait on llmux_engine_fd with poll(2). */
static void test_fd(const llmux_engine *e) {
    int fd = -1;
    CHECK_RC(llmux_engine_fd(e, &fd), LLMUX_RESULT_OK);
    CHECK(fd >= 0);
    int fd2 = -1;
    CHECK_RC(llmux_engine_fd(e, &fd2), LLMUX_RESULT_OK);
    CHECK(fd == fd2);

    struct pollfd p = {.fd = fd, .events = POLLIN};
    CHECKF(poll(&p, 1, 0) == 0, "fd readable with no events queued (revents %d)", p.revents);

    uint64_t id = submit(e, "demo/chat", 1, NULL);
    outcome o = {0};
    o.chunks_ok = 1;
    llmux_event evs[BATCH];
    int wakeups = 0;
    double deadline = now_s() + patience_s();
    while (o.terminals == 0) {
        CHECKF(now_s() < deadline, "fd never signalled the terminal event");
        p.revents = 0;
        int r = poll(&p, 1, 1000);
        CHECK(r >= 0);
        if (r == 0)
            continue;
        CHECK(p.revents & POLLIN);
        wakeups++;
        size_t n = 0;
        CHECK_RC(llmux_poll(e, evs, BATCH, 0, &n), LLMUX_RESULT_OK);
        /* Readable means events are waiting: a timeout-0 poll gets some. */
        CHECKF(n > 0, "fd was readable but llmux_poll(0) returned nothing");
        for (size_t i = 0; i < n; i++) {
            CHECK(evs[i].request_id == id);
            account(&o, &evs[i]);
        }
        llmux_events_free(evs, n);
    }
    CHECK(wakeups >= 1);
    CHECKF(o.kind == LLMUX_EVENT_KIND_DONE, "%s", o.terminal);
    CHECK(o.chunks >= 5 && o.chunks_ok);
    outcome_free(&o);
    /* Level-triggered: with the queue drained the fd is not readable. */
    p.revents = 0;
    CHECKF(poll(&p, 1, 0) == 0, "fd still readable after draining (revents %d)", p.revents);
}

typedef struct {
    const llmux_engine *e;
    atomic_int returned;
    llmux_result rc;
    size_t count;
} waiter;

static void *wait_forever(void *arg) {
    waiter *w = arg;
    llmux_event evs[BATCH];
    size_t n = 77;
    w->rc = llmux_poll(w->e, evs, BATCH, -1, &n);
    w->count = n;
    llmux_events_free(evs, n);
    atomic_store(&w->returned, 1);
    return NULL;
}

static void test_wakeup(const llmux_engine *e) {
    waiter w = {.e = e};
    atomic_init(&w.returned, 0);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, wait_forever, &w) == 0);
    sleep_ms(300);
    CHECKF(atomic_load(&w.returned) == 0, "poll(-1) returned with nothing to report");
    CHECK_RC(llmux_wakeup(e), LLMUX_RESULT_OK);
    double deadline = now_s() + (g_light ? 60.0 : 10.0);
    while (!atomic_load(&w.returned)) {
        CHECKF(now_s() < deadline, "llmux_wakeup did not unblock llmux_poll(-1)");
        sleep_ms(5);
    }
    CHECK(pthread_join(t, NULL) == 0);
    CHECK_RC(w.rc, LLMUX_RESULT_OK);
    CHECKF(w.count == 0, "woken poll returned %zu events", w.count);

    /* A wakeup with nobody waiting makes the next poll return at once. */
    CHECK_RC(llmux_wakeup(e), LLMUX_RESULT_OK);
    llmux_event evs[BATCH];
    size_t n = 5;
    double t0 = now_s();
    CHECK_RC(llmux_poll(e, evs, BATCH, 30000, &n), LLMUX_RESULT_OK);
    CHECK(n == 0);
    CHECKF(now_s() - t0 < 20.0, "a pending wakeup did not end the next poll");
    /* ... and only that one. */
    n = 5;
    CHECK_RC(llmux_poll(e, evs, BATCH, 50, &n), LLMUX_RESULT_OK);
    CHECK(n == 0);
}

/* One wakeup releases one blocked poller, not all of them. */
static void test_wakeup_one_of_two(const llmux_engine *e) {
    waiter w[2] = {{.e = e}, {.e = e}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        atomic_init(&w[i].returned, 0);
        CHECK(pthread_create(&t[i], NULL, wait_forever, &w[i]) == 0);
    }
    sleep_ms(300);
    CHECK(atomic_load(&w[0].returned) + atomic_load(&w[1].returned) == 0);
    double deadline = now_s() + (g_light ? 60.0 : 10.0);
    for (int woken = 1; woken <= 2; woken++) {
        CHECK_RC(llmux_wakeup(e), LLMUX_RESULT_OK);
        while (atomic_load(&w[0].returned) + atomic_load(&w[1].returned) < woken) {
            CHECKF(now_s() < deadline, "wakeup %d did not release a poller", woken);
            sleep_ms(5);
        }
        sleep_ms(300);
        CHECKF(atomic_load(&w[0].returned) + atomic_load(&w[1].returned) == woken,
               "one wakeup released %d pollers",
               atomic_load(&w[0].returned) + atomic_load(&w[1].returned));
    }
    for (int i = 0; i < 2; i++) {
        CHECK(pthread_join(t[i], NULL) == 0);
        CHECK_RC(w[i].rc, LLMUX_RESULT_OK);
        CHECK(w[i].count == 0);
    }
}

/* Anthropic Messages in, Anthropic stream events out (the upstream is OpenAI). */
static void test_anthropic(const llmux_engine *e) {
    static const char req[] =
        "{\"model\":\"demo/chat\",\"max_tokens\":64,\"stream\":true,"
        "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    uint64_t id = 0;
    char *err = NULL;
    llmux_result rc =
        llmux_submit(e, LLMUX_PROTOCOL_ANTHROPIC, req, sizeof req - 1, &id, &err);
    CHECKF(rc == LLMUX_RESULT_OK, "anthropic submit: %u %s", (unsigned)rc, err ? err : "");
    CHECK(id != 0);
    outcome o = {0};
    int starts = 0, deltas = 0, stops = 0;
    llmux_event evs[BATCH];
    double deadline = now_s() + patience_s();
    while (o.terminals == 0) {
        CHECKF(now_s() < deadline, "anthropic request did not end");
        size_t n = 0;
        CHECK_RC(llmux_poll(e, evs, BATCH, 250, &n), LLMUX_RESULT_OK);
        for (size_t i = 0; i < n; i++) {
            CHECK(evs[i].request_id == id);
            account(&o, &evs[i]);
            if (evs[i].kind == LLMUX_EVENT_KIND_CHUNK) {
                CHECKF(contains(evs[i].data, "\"type\":"), "%s", evs[i].data);
                CHECKF(!contains(evs[i].data, "chat.completion.chunk"), "%s", evs[i].data);
                starts += contains(evs[i].data, "\"message_start\"");
                deltas += contains(evs[i].data, "\"content_block_delta\"");
                stops += contains(evs[i].data, "\"message_stop\"");
            }
        }
        llmux_events_free(evs, n);
    }
    CHECKF(o.kind == LLMUX_EVENT_KIND_DONE, "%s", o.terminal);
    CHECKF(starts == 1 && deltas >= 1 && stops == 1, "message_start %d, deltas %d, message_stop %d",
           starts, deltas, stops);
    CHECK(contains(o.terminal, "\"routing\""));
    check_served_by_known_endpoint(o.terminal);
    outcome_free(&o);

    /* Non-streaming: a full Anthropic message. */
    static const char req2[] = "{\"model\":\"demo/solo\",\"max_tokens\":64,"
                               "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    CHECK_RC(llmux_submit(e, LLMUX_PROTOCOL_ANTHROPIC, req2, sizeof req2 - 1, &id, NULL),
             LLMUX_RESULT_OK);
    o = drain(e, id, 0);
    CHECKF(o.kind == LLMUX_EVENT_KIND_DONE, "%s", o.terminal);
    CHECK(o.chunks == 0);
    CHECKF(contains(o.terminal, "\"response\"") && contains(o.terminal, "\"type\":\"message\""),
           "%s", o.terminal);
    CHECK(contains(o.terminal, "Hello from"));
    outcome_free(&o);
}

/* OpenAI Responses in, Responses stream events out (the upstream is OpenAI
   Chat Completions), streaming and not. */
static void test_responses(const llmux_engine *e) {
    static const char req[] = "{\"model\":\"demo/chat\",\"stream\":true,\"input\":\"hi\"}";
    uint64_t id = 0;
    CHECK_RC(llmux_submit(e, LLMUX_PROTOCOL_RESPONSES, req, sizeof req - 1, &id, NULL),
             LLMUX_RESULT_OK);
    outcome o = {0};
    int created = 0, deltas = 0, completed = 0, last_completed = 0;
    llmux_event evs[BATCH];
    double deadline = now_s() + patience_s();
    while (o.terminals == 0) {
        CHECKF(now_s() < deadline, "responses request did not end");
        size_t n = 0;
        CHECK_RC(llmux_poll(e, evs, BATCH, 250, &n), LLMUX_RESULT_OK);
        for (size_t i = 0; i < n; i++) {
            CHECK(evs[i].request_id == id);
            account(&o, &evs[i]);
            if (evs[i].kind == LLMUX_EVENT_KIND_CHUNK) {
                CHECKF(contains(evs[i].data, "\"sequence_number\":"), "%s", evs[i].data);
                created += contains(evs[i].data, "\"type\":\"response.created\"");
                deltas += contains(evs[i].data, "\"type\":\"response.output_text.delta\"");
                last_completed = contains(evs[i].data, "\"type\":\"response.completed\"");
                completed += last_completed;
            }
        }
        llmux_events_free(evs, n);
    }
    CHECKF(o.kind == LLMUX_EVENT_KIND_DONE, "%s", o.terminal);
    CHECKF(created == 1 && deltas >= 1 && completed == 1 && last_completed,
           "response.created %d, deltas %d, response.completed %d", created, deltas, completed);
    outcome_free(&o);

    static const char req2[] = "{\"model\":\"demo/solo\",\"input\":\"hi\"}";
    CHECK_RC(llmux_submit(e, LLMUX_PROTOCOL_RESPONSES, req2, sizeof req2 - 1, &id, NULL),
             LLMUX_RESULT_OK);
    o = drain(e, id, 0);
    CHECKF(o.kind == LLMUX_EVENT_KIND_DONE, "%s", o.terminal);
    CHECK(o.chunks == 0);
    CHECKF(contains(o.terminal, "\"object\":\"response\"") && contains(o.terminal, "Hello from"),
           "%s", o.terminal);
    outcome_free(&o);
}

static void test_cancel(const llmux_engine *e) {
    /* Cancel after the first chunk of a slow stream. */
    uint64_t id = submit(e, "demo/solo", 1, "\"mock\":{\"chunks\":100,\"chunk_delay_ms\":20}");
    outcome o = {0};
    o.chunks_ok = 1;
    llmux_event evs[BATCH];
    double deadline = now_s() + patience_s();
    while (o.chunks == 0) {
        CHECKF(now_s() < deadline, "no chunk from the slow stream");
        size_t n = 0;
        CHECK_RC(llmux_poll(e, evs, 1, 250, &n), LLMUX_RESULT_OK);
        for (size_t i = 0; i < n; i++) {
            CHECK(evs[i].request_id == id);
            account(&o, &evs[i]);
        }
        llmux_events_free(evs, n);
    }
    CHECKF(o.terminals == 0, "the slow stream ended early: %s", o.terminal);
    CHECK_RC(llmux_cancel(e, id), LLMUX_RESULT_OK);
    outcome rest = drain(e, id, 300);
    CHECKF(rest.kind == LLMUX_EVENT_KIND_ERROR, "terminal after cancel: %s", rest.terminal);
    CHECKF(contains(rest.terminal, "cancelled"), "%s", rest.terminal);
    CHECK(contains(rest.terminal, "\"type\":\"error\""));
    CHECK(contains(rest.terminal, "\"routing\""));
    CHECK(o.chunks + rest.chunks < 100);
    outcome_free(&o);
    outcome_free(&rest);
    /* It has ended: the id is no longer known. */
    CHECK_RC(llmux_cancel(e, id), LLMUX_RESULT_ERR_UNKNOWN_REQUEST);

    /* Cancel straight after submitting, before any chunk. */
    id = submit(e, "demo/solo", 1,
                "\"mock\":{\"first_token_delay_ms\":2000,\"chunks\":100,\"chunk_delay_ms\":20}");
    CHECK_RC(llmux_cancel(e, id), LLMUX_RESULT_OK);
    o = drain(e, id, 300);
    CHECKF(o.kind == LLMUX_EVENT_KIND_ERROR && contains(o.terminal, "cancelled"), "%s",
           o.terminal);
    outcome_free(&o);
    CHECK_RC(llmux_cancel(e, id), LLMUX_RESULT_ERR_UNKNOWN_REQUEST);

    /* A request that has ended (its terminal event queued, not yet polled)
       cannot be cancelled, and keeps its single DONE. */
    id = submit(e, "demo/solo", 0, NULL);
    int fd = -1;
    CHECK_RC(llmux_engine_fd(e, &fd), LLMUX_RESULT_OK);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    CHECKF(poll(&p, 1, (int)(patience_s() * 1000)) == 1, "no event for the request");
    CHECK_RC(llmux_cancel(e, id), LLMUX_RESULT_ERR_UNKNOWN_REQUEST);
    o = drain(e, id, 200);
    CHECKF(o.kind == LLMUX_EVENT_KIND_DONE, "%s", o.terminal);
    outcome_free(&o);
    CHECK_RC(llmux_cancel(e, id), LLMUX_RESULT_ERR_UNKNOWN_REQUEST);
}

/* Cancels racing with completion: still exactly one terminal per request. */
static void test_cancel_race(const llmux_engine *e) {
    enum { MAXR = 32 };
    int count = g_light ? 6 : 24;
    uint64_t ids[MAXR];
    llmux_result cancel_rc[MAXR];
    int terminals[MAXR] = {0};
    llmux_event_kind kinds[MAXR] = {0};
    int cancelled_text[MAXR] = {0};
    for (int i = 0; i < count; i++)
        ids[i] = submit(e, "demo/chat", i % 3 != 0,
                        "\"mock\":{\"chunks\":10,\"chunk_delay_ms\":10}");
    for (int i = 0; i < count; i++) {
        sleep_ms((i * 7) % 60);
        cancel_rc[i] = llmux_cancel(e, ids[i]);
        CHECKF(cancel_rc[i] == LLMUX_RESULT_OK || cancel_rc[i] == LLMUX_RESULT_ERR_UNKNOWN_REQUEST,
               "cancel: %u", (unsigned)cancel_rc[i]);
    }
    int done = 0;
    llmux_event evs[BATCH];
    double deadline = now_s() + patience_s();
    while (done < count) {
        CHECKF(now_s() < deadline, "%d of %d requests ended", done, count);
        size_t n = 0;
        CHECK_RC(llmux_poll(e, evs, BATCH, 250, &n), LLMUX_RESULT_OK);
        for (size_t k = 0; k < n; k++) {
            int i = 0;
            while (i < count && ids[i] != evs[k].request_id)
                i++;
            CHECKF(i < count, "event for unknown id %" PRIu64, evs[k].request_id);
            check_event_shape(&evs[k]);
            CHECKF(terminals[i] == 0, "event after the terminal of %" PRIu64 ": %s", ids[i],
                   evs[k].data);
            if (evs[k].kind != LLMUX_EVENT_KIND_CHUNK) {
                terminals[i]++;
                kinds[i] = evs[k].kind;
                cancelled_text[i] = contains(evs[k].data, "cancelled");
                CHECKF(evs[k].kind == LLMUX_EVENT_KIND_DONE || cancelled_text[i],
                       "unexpected error: %s", evs[k].data);
                done++;
            }
        }
        llmux_events_free(evs, n);
    }
    size_t n = 0;
    CHECK_RC(llmux_poll(e, evs, BATCH, 200, &n), LLMUX_RESULT_OK);
    CHECKF(n == 0, "stray event: %s", n ? evs[0].data : "");
    for (int i = 0; i < count; i++) {
        CHECK(terminals[i] == 1);
        /* Refused: it had already ended, so it was not cancelled. */
        if (cancel_rc[i] == LLMUX_RESULT_ERR_UNKNOWN_REQUEST)
            CHECKF(kinds[i] == LLMUX_EVENT_KIND_DONE, "request %d: refused cancel, yet cancelled", i);
        CHECK_RC(llmux_cancel(e, ids[i]), LLMUX_RESULT_ERR_UNKNOWN_REQUEST);
    }
}

static void test_stats(const llmux_engine *e) {
    char *s = NULL;
    CHECK_RC(llmux_stats(e, &s), LLMUX_RESULT_OK);
    CHECK(s != NULL);
    CHECKF(contains(s, "\"endpoints\""), "%s", s);
    CHECKF(contains(s, "p0/default"), "%s", s);
    CHECK(s[0] == '{' && s[strlen(s) - 1] == '}');
    llmux_string_free(s);
}

/* ---------------------------------------------------- concurrent threads */

#define MAX_IDS 256

static struct {
    pthread_mutex_t mu;
    uint64_t submitted[MAX_IDS];
    int nsubmitted;
    uint64_t term_ids[MAX_IDS * 2];
    int nterm;
    atomic_int terminals;
    atomic_int chunks;
    atomic_int bad_chunks;
    atomic_int failures;
    int expected;
} g_conc;

typedef struct {
    const llmux_engine *e;
    int index;
    int requests;
} conc_arg;

static void conc_note_terminal(uint64_t id) {
    pthread_mutex_lock(&g_conc.mu);
    if (g_conc.nterm < MAX_IDS * 2)
        g_conc.term_ids[g_conc.nterm++] = id;
    pthread_mutex_unlock(&g_conc.mu);
    atomic_fetch_add(&g_conc.terminals, 1);
}

static void *conc_worker(void *argp) {
    conc_arg *a = argp;
    for (int i = 0; i < a->requests; i++) {
        /* Mix streaming and non-streaming, both models. */
        int stream = (a->index + i) % 2 == 0;
        const char *model = i % 3 == 2 ? "demo/solo" : "demo/chat";
        uint64_t id = submit(a->e, model, stream, "\"mock\":{\"chunk_delay_ms\":2}");
        pthread_mutex_lock(&g_conc.mu);
        g_conc.submitted[g_conc.nsubmitted++] = id;
        pthread_mutex_unlock(&g_conc.mu);
    }
    /* Everybody polls until every request of every thread has ended. */
    llmux_event evs[BATCH];
    double deadline = now_s() + patience_s();
    while (atomic_load(&g_conc.terminals) < g_conc.expected) {
        if (now_s() > deadline) {
            atomic_fetch_add(&g_conc.failures, 1);
            break;
        }
        size_t n = 0;
        llmux_result rc = llmux_poll(a->e, evs, BATCH, 100, &n);
        if (rc != LLMUX_RESULT_OK) {
            atomic_fetch_add(&g_conc.failures, 1);
            break;
        }
        for (size_t i = 0; i < n; i++) {
            check_event_shape(&evs[i]);
            if (evs[i].kind == LLMUX_EVENT_KIND_CHUNK) {
                atomic_fetch_add(&g_conc.chunks, 1);
                if (!contains(evs[i].data, "chat.completion.chunk"))
                    atomic_fetch_add(&g_conc.bad_chunks, 1);
            } else {
                if (evs[i].kind != LLMUX_EVENT_KIND_DONE) {
                    fprintf(stderr, "unexpected terminal: %s\n", evs[i].data);
                    atomic_fetch_add(&g_conc.failures, 1);
                }
                conc_note_terminal(evs[i].request_id);
            }
        }
        llmux_events_free(evs, n);
    }
    return NULL;
}

static void test_concurrent(const llmux_engine *e) {
    int threads = g_light ? 2 : 4;
    int per = g_light ? 2 : 6;
    pthread_t t[8];
    conc_arg args[8];
    CHECK(pthread_mutex_init(&g_conc.mu, NULL) == 0);
    g_conc.expected = threads * per;
    atomic_init(&g_conc.terminals, 0);
    atomic_init(&g_conc.chunks, 0);
    atomic_init(&g_conc.bad_chunks, 0);
    atomic_init(&g_conc.failures, 0);
    for (int i = 0; i < threads; i++) {
        args[i] = (conc_arg){.e = e, .index = i, .requests = per};
        CHECK(pthread_create(&t[i], NULL, conc_worker, &args[i]) == 0);
    }
    for (int i = 0; i < threads; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    CHECK(atomic_load(&g_conc.failures) == 0);
    CHECK(g_conc.nsubmitted == threads * per);
    CHECKF(g_conc.nterm == g_conc.nsubmitted, "%d terminals for %d requests", g_conc.nterm,
           g_conc.nsubmitted);
    /* Ids are distinct, and each got exactly one terminal. */
    for (int i = 0; i < g_conc.nsubmitted; i++) {
        int same_id = 0, terms = 0;
        for (int j = 0; j < g_conc.nsubmitted; j++)
            same_id += g_conc.submitted[j] == g_conc.submitted[i];
        for (int j = 0; j < g_conc.nterm; j++)
            terms += g_conc.term_ids[j] == g_conc.submitted[i];
        CHECKF(same_id == 1, "id %" PRIu64 " handed out twice", g_conc.submitted[i]);
        CHECKF(terms == 1, "id %" PRIu64 " had %d terminal events", g_conc.submitted[i], terms);
    }
    CHECK(atomic_load(&g_conc.chunks) > 0);
    CHECK(atomic_load(&g_conc.bad_chunks) == 0);
    /* Nothing is left over. */
    llmux_event evs[BATCH];
    size_t n = 0;
    CHECK_RC(llmux_poll(e, evs, BATCH, 100, &n), LLMUX_RESULT_OK);
    CHECKF(n == 0, "stray event after all terminals: %s", n ? evs[0].data : "");
    pthread_mutex_destroy(&g_conc.mu);
}

/* ------------------------------------------------- freeing while in flight */

static void test_free_in_flight(void) {
    llmux_engine *e = new_engine();
    int slow = g_light ? 2 : 4;
    uint64_t first = 0;
    for (int i = 0; i < slow; i++) {
        uint64_t id = submit(e, "demo/chat", 1, "\"mock\":{\"chunks\":200,\"chunk_delay_ms\":50}");
        if (!first)
            first = id;
    }
    /* A quick one whose events are never polled: the engine frees them. */
    (void)submit(e, "demo/solo", 0, NULL);

    /* Keep one polled batch alive across the engine's destruction. */
    llmux_event held[BATCH];
    size_t nheld = 0;
    double deadline = now_s() + patience_s();
    while (nheld == 0) {
        CHECKF(now_s() < deadline, "no event from the in-flight requests");
        CHECK_RC(llmux_poll(e, held, BATCH, 250, &nheld), LLMUX_RESULT_OK);
    }
    sleep_ms(200);

    double t0 = now_s();
    llmux_engine_free(e);
    double took = now_s() - t0;
    CHECKF(took < (g_light ? 60.0 : 10.0), "llmux_engine_free took %.2f s", took);

    /* Polled events outlive the engine. */
    for (size_t i = 0; i < nheld; i++) {
        check_event_shape(&held[i]);
        CHECK(held[i].request_id >= first);
    }
    llmux_events_free(held, nheld);
    llmux_events_free(held, nheld);

    /* An engine freed right after submitting. */
    e = new_engine();
    (void)submit(e, "demo/chat", 1, "\"mock\":{\"chunks\":50,\"chunk_delay_ms\":50}");
    (void)submit(e, "demo/chat", 0, NULL);
    t0 = now_s();
    llmux_engine_free(e);
    took = now_s() - t0;
    CHECKF(took < (g_light ? 60.0 : 10.0), "llmux_engine_free took %.2f s", took);

    /* An engine that never did anything. */
    e = new_engine();
    llmux_engine_free(e);
}

/* ------------------------------------------------------------------- main */

int main(int argc, char **argv) {
    char *env_copy = NULL;
    char *env_urls[16];
    test_init();

    if (argc > 1) {
        g_nurls = argc - 1 > 16 ? 16 : argc - 1;
        g_urls = argv + 1;
    } else {
        const char *env = getenv("LLMUX_TEST_BASE_URLS");
        if (env == NULL || env[0] == '\0') {
            fprintf(stderr, "usage: %s BASE_URL [BASE_URL...] (or LLMUX_TEST_BASE_URLS)\n",
                    argv[0]);
            return 2;
        }
        env_copy = strdup(env);
        for (char *save = NULL, *tok = strtok_r(env_copy, ",", &save); tok && g_nurls < 16;
             tok = strtok_r(NULL, ",", &save))
            env_urls[g_nurls++] = tok;
        g_urls = env_urls;
    }

    test_version();
    llmux_engine *e = new_engine();
    test_stream_request(e);
    test_non_stream_request(e);
    test_game_loop(e);
    test_fd(e);
    test_wakeup(e);
    test_wakeup_one_of_two(e);
    test_anthropic(e);
    test_responses(e);
    test_cancel(e);
    test_cancel_race(e);
    test_stats(e);
    test_concurrent(e);
    test_stats(e);
    llmux_engine_free(e);
    test_free_in_flight();

    free(env_copy);
    printf("test_stream: %d checks passed\n", checks_passed());
    return 0;
}
