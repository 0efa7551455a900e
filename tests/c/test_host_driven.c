/*
 * test_host_driven: an engine with "worker_threads": 0 through the C ABI.
 * The engine starts no thread; its I/O runs inside llmux_poll on the
 * caller's thread. Checks: blocking polls complete requests and streams,
 * a game loop of timeout-0 polls completes a stream, two polling threads
 * see exactly one terminal per request, llmux_wakeup releases a blocked
 * poll, and freeing with requests in flight cancels them.
 *
 * usage: test_host_driven BASE_URL (or env LLMUX_TEST_BASE_URLS)
 */
#define _POSIX_C_SOURCE 200809L

#include "llmux.h"
#include "test_util.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 16
#define MAX_REQS 64

static llmux_engine *new_engine(const char *base) {
    char cfg[1024];
    snprintf(cfg, sizeof cfg,
             "{\"providers\":[{\"slug\":\"solo\",\"protocol\":\"openai\","
             "\"base_url\":\"%s/v1\",\"api_key\":\"test-key\"}],"
             "\"models\":[{\"slug\":\"t/m\",\"endpoints\":[{\"provider\":\"solo\","
             "\"upstream_model\":\"m\"}]}],\"worker_threads\":0}",
             base);
    llmux_engine *e = NULL;
    char *err = NULL;
    CHECK_RC(llmux_engine_new(cfg, strlen(cfg), &e, &err), LLMUX_RESULT_OK);
    CHECK(e != NULL && err == NULL);
    return e;
}

static uint64_t submit(llmux_engine *e, int stream, const char *mock) {
    char body[512];
    snprintf(body, sizeof body,
             "{\"model\":\"t/m\",\"stream\":%s,\"messages\":[{\"role\":\"user\","
             "\"content\":\"hi\"}],\"mock\":%s}",
             stream ? "true" : "false", mock);
    uint64_t id = 0;
    char *err = NULL;
    CHECK_RC(llmux_submit(e, LLMUX_PROTOCOL_OPENAI, body, strlen(body), &id, &err),
             LLMUX_RESULT_OK);
    return id;
}

/* Polls with `timeout_ms` until request `id` ends; returns its terminal
 * kind and counts its chunks into *chunks. */
static llmux_event_kind run_until_done(llmux_engine *e, uint64_t id, int timeout_ms,
                                       int *chunks, int *polls) {
    llmux_event evs[BATCH];
    time_t start = time(NULL);
    for (;;) {
        size_t n = 0;
        CHECK_RC(llmux_poll(e, evs, BATCH, timeout_ms, &n), LLMUX_RESULT_OK);
        (*polls)++;
        for (size_t i = 0; i < n; i++) {
            CHECK(evs[i].request_id == id);
            if (evs[i].kind == LLMUX_EVENT_KIND_CHUNK) {
                (*chunks)++;
            } else {
                llmux_event_kind k = evs[i].kind;
                CHECK(i == n - 1);
                llmux_events_free(evs, n);
                return k;
            }
        }
        llmux_events_free(evs, n);
        CHECKF(time(NULL) - start < 30, "request %llu did not end", (unsigned long long)id);
        if (timeout_ms == 0) {
            struct timespec ts = {0, 200000}; /* the rest of a frame */
            nanosleep(&ts, NULL);
        }
    }
}

struct shared {
    llmux_engine *e;
    int want;
    atomic_int terminals;
    atomic_int per_id[MAX_REQS + 1];
};

static void *poller(void *arg) {
    struct shared *s = arg;
    llmux_event evs[BATCH];
    time_t start = time(NULL);
    while (atomic_load(&s->terminals) < s->want && time(NULL) - start < 30) {
        size_t n = 0;
        CHECK_RC(llmux_poll(s->e, evs, BATCH, 20, &n), LLMUX_RESULT_OK);
        for (size_t i = 0; i < n; i++) {
            if (evs[i].kind != LLMUX_EVENT_KIND_CHUNK) {
                CHECK(evs[i].kind == LLMUX_EVENT_KIND_DONE);
                CHECK(evs[i].request_id >= 1 && evs[i].request_id <= MAX_REQS);
                atomic_fetch_add(&s->per_id[evs[i].request_id], 1);
                atomic_fetch_add(&s->terminals, 1);
            }
        }
        llmux_events_free(evs, n);
    }
    return NULL;
}

static void *blocked_poll(void *arg) {
    llmux_engine *e = arg;
    llmux_event evs[BATCH];
    size_t n = 99;
    CHECK_RC(llmux_poll(e, evs, BATCH, -1, &n), LLMUX_RESULT_OK);
    CHECK(n == 0);
    return NULL;
}

int main(int argc, char **argv) {
    test_init();
    char *env_copy = NULL;
    const char *base = first_base_url(argc, argv, &env_copy);
    if (base == NULL)
        return 2;

    /* Blocking polls: a request and a stream. */
    llmux_engine *e = new_engine(base);
    int chunks = 0, polls = 0;
    uint64_t id = submit(e, 0, "{}");
    CHECK(run_until_done(e, id, 1000, &chunks, &polls) == LLMUX_EVENT_KIND_DONE);
    CHECK(chunks == 0);
    chunks = 0;
    id = submit(e, 1, "{\"chunks\":6}");
    CHECK(run_until_done(e, id, -1, &chunks, &polls) == LLMUX_EVENT_KIND_DONE);
    CHECK(chunks >= 6);

    /* A game loop: timeout 0 once a frame. */
    chunks = 0;
    polls = 0;
    id = submit(e, 1, "{\"chunks\":8,\"chunk_delay_ms\":2}");
    CHECK(run_until_done(e, id, 0, &chunks, &polls) == LLMUX_EVENT_KIND_DONE);
    CHECK(chunks >= 8);
    CHECK(polls > 1);

    /* Two polling threads share the I/O; one terminal per request. */
    struct shared s;
    memset(&s, 0, sizeof s);
    s.e = e;
    s.want = g_light ? 8 : 40;
    uint64_t first = 0;
    for (int i = 0; i < s.want; i++) {
        uint64_t rid = submit(e, i % 2, "{\"chunks\":3}");
        if (i == 0)
            first = rid;
    }
    CHECK(first + (uint64_t)s.want - 1 <= MAX_REQS);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&t[i], NULL, poller, &s) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    CHECK(atomic_load(&s.terminals) == s.want);
    for (uint64_t r = first; r < first + (uint64_t)s.want; r++)
        CHECK(atomic_load(&s.per_id[r]) == 1);

    /* llmux_wakeup releases a poll blocked with nothing in flight. */
    pthread_t b;
    CHECK(pthread_create(&b, NULL, blocked_poll, e) == 0);
    struct timespec ts = {0, 50000000};
    nanosleep(&ts, NULL);
    CHECK_RC(llmux_wakeup(e), LLMUX_RESULT_OK);
    pthread_join(b, NULL);

    /* Freeing with streams in flight cancels them (no thread to join). */
    for (int i = 0; i < 3; i++)
        submit(e, 1, "{\"first_token_delay_ms\":5000}");
    llmux_event evs[BATCH];
    size_t n = 0;
    CHECK_RC(llmux_poll(e, evs, BATCH, 50, &n), LLMUX_RESULT_OK);
    llmux_events_free(evs, n);
    time_t t0 = time(NULL);
    llmux_engine_free(e);
    CHECK(time(NULL) - t0 <= 3);

    free(env_copy);
    printf("test_host_driven: %d checks passed\n", checks_passed());
    return 0;
}
