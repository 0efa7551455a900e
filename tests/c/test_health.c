/*
 * test_health: llmux_health_export / llmux_health_import from C: NULL and
 * bad input, a round trip between two engines, and skipping entries the
 * catalog does not have.
 *
 * usage: test_health BASE_URL (or env LLMUX_TEST_BASE_URLS; first URL used).
 * Exits 0 printing "test_health: N checks passed", else 1.
 */
#define _POSIX_C_SOURCE 200809L

#include "llmux.h"
#include "test_util.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *g_url;

/* An engine whose single model `model` is served by provider p0 (the mock). */
static llmux_engine *engine_for(const char *model) {
    char cfg[1024];
    snprintf(cfg, sizeof cfg,
             "{\"providers\":[{\"slug\":\"p0\",\"protocol\":\"openai\",\"base_url\":\"%s/v1\"}],"
             "\"models\":[{\"slug\":\"%s\",\"endpoints\":[{\"provider\":\"p0\","
             "\"upstream_model\":\"mock\"}]}],"
             "\"timeouts\":{\"connect_ms\":20000,\"first_token_ms\":60000,\"idle_ms\":60000,"
             "\"total_ms\":300000}}",
             g_url, model);
    llmux_engine *e = NULL;
    char *err = NULL;
    llmux_result rc = llmux_engine_new(cfg, strlen(cfg), &e, &err);
    CHECKF(rc == LLMUX_RESULT_OK, "engine_new: %u %s", (unsigned)rc, err ? err : "");
    return e;
}

/* Runs one non-streaming request to completion, so health has data. */
static void one_request(const llmux_engine *e, const char *model) {
    char req[256];
    int len = snprintf(req, sizeof req,
                       "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                       model);
    uint64_t id = 0;
    CHECK_RC(llmux_submit(e, LLMUX_PROTOCOL_OPENAI, req, (size_t)len, &id, NULL),
             LLMUX_RESULT_OK);
    llmux_event evs[4];
    int ended = 0;
    double deadline = now_s() + patience_s();
    while (!ended) {
        CHECKF(now_s() < deadline, "request did not end");
        size_t n = 0;
        CHECK_RC(llmux_poll(e, evs, 4, 250, &n), LLMUX_RESULT_OK);
        for (size_t i = 0; i < n; i++) {
            CHECK(evs[i].request_id == id);
            if (evs[i].kind != LLMUX_EVENT_KIND_CHUNK) {
                CHECKF(evs[i].kind == LLMUX_EVENT_KIND_DONE, "%s", evs[i].data);
                ended = 1;
            }
        }
        llmux_events_free(evs, n);
    }
}

static void test_null_and_bad_input(const llmux_engine *e) {
    char *s = NULL;
    size_t restored = 777;
    char *err = NULL;
    static const char ok[] = "{\"version\":1,\"endpoints\":[]}";

    CHECK_RC(llmux_health_export(NULL, &s), LLMUX_RESULT_ERR_NULL_ARGUMENT);
    CHECK_RC(llmux_health_export(e, NULL), LLMUX_RESULT_ERR_NULL_ARGUMENT);
    CHECK(s == NULL);
    CHECK_RC(llmux_health_import(NULL, ok, sizeof ok - 1, &restored, &err),
             LLMUX_RESULT_ERR_NULL_ARGUMENT);
    llmux_string_free(err);
    err = NULL;
    CHECK_RC(llmux_health_import(e, NULL, 5, &restored, &err), LLMUX_RESULT_ERR_NULL_ARGUMENT);
    llmux_string_free(err);
    err = NULL;
    CHECK_RC(llmux_health_import(NULL, NULL, 0, NULL, NULL), LLMUX_RESULT_ERR_NULL_ARGUMENT);
    CHECK(restored == 777);

    static const char bad_utf8[] = "{\"endpoints\":[{\"model\":\"\xff\"}]}";
    CHECK_RC(llmux_health_import(e, bad_utf8, sizeof bad_utf8 - 1, &restored, &err),
             LLMUX_RESULT_ERR_INVALID_UTF8);
    llmux_string_free(err);
    err = NULL;

    static const char malformed[] = "{\"endpoints\":[";
    CHECK_RC(llmux_health_import(e, malformed, sizeof malformed - 1, &restored, &err),
             LLMUX_RESULT_ERR_INVALID_JSON);
    CHECKF(err != NULL && err[0] != '\0', "no message for malformed health JSON");
    llmux_string_free(err);
    err = NULL;
    CHECK_RC(llmux_health_import(e, malformed, sizeof malformed - 1, NULL, NULL),
             LLMUX_RESULT_ERR_INVALID_JSON);
    CHECK(restored == 777);

    /* Valid, with nothing to restore. */
    CHECK_RC(llmux_health_import(e, ok, sizeof ok - 1, &restored, &err), LLMUX_RESULT_OK);
    CHECK(restored == 0 && err == NULL);
    CHECK_RC(llmux_health_import(e, ok, sizeof ok - 1, NULL, NULL), LLMUX_RESULT_OK);
}

static void test_round_trip(void) {
    llmux_engine *a = engine_for("demo/chat");
    int reqs = g_light ? 2 : 5;
    for (int i = 0; i < reqs; i++)
        one_request(a, "demo/chat");
    char *exported = NULL;
    CHECK_RC(llmux_health_export(a, &exported), LLMUX_RESULT_OK);
    CHECK(exported != NULL);
    CHECKF(contains(exported, "\"endpoints\"") && contains(exported, "p0/default") &&
               contains(exported, "demo/chat"),
           "%s", exported);
    llmux_engine_free(a);

    /* The exported text outlives its engine and warms a new one. */
    llmux_engine *b = engine_for("demo/chat");
    size_t restored = 0;
    char *err = NULL;
    size_t len = strlen(exported);
    char *exact = malloc(len); /* not NUL-terminated */
    CHECK(exact != NULL);
    memcpy(exact, exported, len);
    CHECK_RC(llmux_health_import(b, exact, len, &restored, &err), LLMUX_RESULT_OK);
    free(exact);
    CHECKF(restored == 1, "restored %zu", restored);
    CHECK(err == NULL);
    char *again = NULL;
    CHECK_RC(llmux_health_export(b, &again), LLMUX_RESULT_OK);
    CHECK(contains(again, "p0/default"));
    llmux_string_free(again);
    one_request(b, "demo/chat"); /* still routes */
    llmux_engine_free(b);

    /* A catalog without that model skips the entry. */
    llmux_engine *c = engine_for("other/model");
    restored = 99;
    CHECK_RC(llmux_health_import(c, exported, len, &restored, NULL), LLMUX_RESULT_OK);
    CHECKF(restored == 0, "restored %zu", restored);
    static const char foreign[] =
        "{\"version\":1,\"endpoints\":[{\"model\":\"zz/zz\",\"endpoint\":\"q/r\"},{}]}";
    restored = 99;
    CHECK_RC(llmux_health_import(c, foreign, sizeof foreign - 1, &restored, NULL),
             LLMUX_RESULT_OK);
    CHECK(restored == 0);
    llmux_engine_free(c);
    llmux_string_free(exported);
}

int main(int argc, char **argv) {
    test_init();
    char *env_copy = NULL;
    g_url = first_base_url(argc, argv, &env_copy);
    if (g_url == NULL)
        return 2;

    llmux_engine *e = engine_for("demo/chat");
    test_null_and_bad_input(e);
    llmux_engine_free(e);
    test_round_trip();

    free(env_copy);
    printf("test_health: %d checks passed\n", checks_passed());
    return 0;
}
