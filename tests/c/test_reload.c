/*
 * test_reload: llmux_engine_reload from C: NULL and bad input, an invalid
 * config refused with every error while the old catalog keeps serving, a
 * valid one swapped in (its report, the new model served, the reload
 * counted in the stats).
 *
 * usage: test_reload BASE_URL (or env LLMUX_TEST_BASE_URLS; first URL used).
 * Exits 0 printing "test_reload: N checks passed", else 1.
 */
#define _POSIX_C_SOURCE 200809L

#include "llmux.h"
#include "test_util.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *g_url;

/* A config whose models are `models` (a JSON fragment using provider p0). */
static int config(char *out, size_t cap, const char *models) {
    return snprintf(out, cap,
                    "{\"providers\":[{\"slug\":\"p0\",\"protocol\":\"openai\","
                    "\"base_url\":\"%s/v1\"}],\"models\":[%s]}",
                    g_url, models);
}

/* Runs one non-streaming request on `model`; returns its terminal kind. */
static llmux_event_kind one_request(const llmux_engine *e, const char *model) {
    char req[256];
    int len = snprintf(req, sizeof req,
                       "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                       model);
    uint64_t id = 0;
    CHECK_RC(llmux_submit(e, LLMUX_PROTOCOL_OPENAI, req, (size_t)len, &id, NULL),
             LLMUX_RESULT_OK);
    llmux_event evs[4];
    llmux_event_kind kind = LLMUX_EVENT_KIND_CHUNK;
    double deadline = now_s() + patience_s();
    while (kind == LLMUX_EVENT_KIND_CHUNK) {
        CHECKF(now_s() < deadline, "request did not end");
        size_t n = 0;
        CHECK_RC(llmux_poll(e, evs, 4, 250, &n), LLMUX_RESULT_OK);
        for (size_t i = 0; i < n; i++) {
            CHECK(evs[i].request_id == id);
            if (evs[i].kind != LLMUX_EVENT_KIND_CHUNK)
                kind = evs[i].kind;
        }
        llmux_events_free(evs, n);
    }
    return kind;
}

static void test_null_and_bad_input(const llmux_engine *e) {
    char *report = NULL;
    char *err = NULL;
    static const char cfg[] = "{}";
    CHECK_RC(llmux_engine_reload(NULL, cfg, sizeof cfg - 1, &report, &err),
             LLMUX_RESULT_ERR_NULL_ARGUMENT);
    CHECKF(contains(err, "engine"), "%s", err ? err : "(null)");
    llmux_string_free(err);
    err = NULL;
    CHECK_RC(llmux_engine_reload(e, NULL, 3, &report, &err), LLMUX_RESULT_ERR_NULL_ARGUMENT);
    CHECK(contains(err, "config_json"));
    llmux_string_free(err);
    err = NULL;
    static const char bad_utf8[] = "{\"models\":\"\xff\"}";
    CHECK_RC(llmux_engine_reload(e, bad_utf8, sizeof bad_utf8 - 1, &report, &err),
             LLMUX_RESULT_ERR_INVALID_UTF8);
    llmux_string_free(err);
    CHECK_RC(llmux_engine_reload(NULL, NULL, 0, NULL, NULL), LLMUX_RESULT_ERR_NULL_ARGUMENT);
    CHECK(report == NULL);
}

static void test_invalid_changes_nothing(const llmux_engine *e) {
    char cfg[2048];
    int len = snprintf(cfg, sizeof cfg,
                       "{\"providers\":[{\"slug\":\"p0\",\"protocol\":\"openai\","
                       "\"base_url\":\"not a url\"}],\"models\":[{\"slug\":\"demo/chat\","
                       "\"endpoints\":[{\"provider\":\"nobody\",\"upstream_model\":\"m\"}]}]}");
    char *report = NULL;
    char *err = NULL;
    CHECK_RC(llmux_engine_reload(e, cfg, (size_t)len, &report, &err),
             LLMUX_RESULT_ERR_INVALID_CONFIG);
    CHECKF(contains(err, "base_url") && contains(err, "endpoints[0]"), "%s", err);
    CHECK(report == NULL);
    llmux_string_free(err);
    CHECK_RC(llmux_engine_reload(e, "{", 1, NULL, NULL), LLMUX_RESULT_ERR_INVALID_CONFIG);
    CHECK(one_request(e, "demo/chat") == LLMUX_EVENT_KIND_DONE);
    char *stats = NULL;
    CHECK_RC(llmux_stats(e, &stats), LLMUX_RESULT_OK);
    CHECKF(contains(stats, "\"reloads\":0"), "%s", stats);
    llmux_string_free(stats);
}

static void test_valid_reload(const llmux_engine *e) {
    char cfg[2048];
    int len = config(cfg, sizeof cfg,
                     "{\"slug\":\"demo/chat\",\"endpoints\":[{\"provider\":\"p0\","
                     "\"upstream_model\":\"m\",\"price\":{\"prompt\":5,\"completion\":9}}]},"
                     "{\"slug\":\"demo/new\",\"endpoints\":[{\"provider\":\"p0\","
                     "\"upstream_model\":\"n\"}]}");
    char *report = NULL;
    char *err = NULL;
    CHECK_RC(llmux_engine_reload(e, cfg, (size_t)len, &report, &err), LLMUX_RESULT_OK);
    CHECK(err == NULL);
    CHECKF(contains(report, "\"generation\":1") &&
               contains(report, "\"added\":[{\"model\":\"demo/new\",\"endpoint\":\"p0/default\"}]") &&
               contains(report, "\"kept\":[{\"model\":\"demo/chat\",\"endpoint\":\"p0/default\"}]") &&
               contains(report, "\"removed\":[]"),
           "%s", report);
    llmux_string_free(report);
    CHECK(one_request(e, "demo/new") == LLMUX_EVENT_KIND_DONE);
    CHECK(one_request(e, "demo/chat") == LLMUX_EVENT_KIND_DONE);
    /* report_out may be NULL. */
    CHECK_RC(llmux_engine_reload(e, cfg, (size_t)len, NULL, NULL), LLMUX_RESULT_OK);
    char *stats = NULL;
    CHECK_RC(llmux_stats(e, &stats), LLMUX_RESULT_OK);
    CHECKF(contains(stats, "\"reloads\":2") && contains(stats, "\"generation\":2") &&
               contains(stats, "\"prompt\":5.0"),
           "%s", stats);
    llmux_string_free(stats);
}

int main(int argc, char **argv) {
    test_init();
    char *env_copy = NULL;
    g_url = first_base_url(argc, argv, &env_copy);
    if (g_url == NULL)
        return 2;
    char cfg[1024];
    int len = config(cfg, sizeof cfg,
                     "{\"slug\":\"demo/chat\",\"endpoints\":[{\"provider\":\"p0\","
                     "\"upstream_model\":\"m\"}]}");
    llmux_engine *e = NULL;
    char *err = NULL;
    llmux_result rc = llmux_engine_new(cfg, (size_t)len, &e, &err);
    CHECKF(rc == LLMUX_RESULT_OK, "engine_new: %u %s", (unsigned)rc, err ? err : "");
    test_null_and_bad_input(e);
    test_invalid_changes_nothing(e);
    test_valid_reload(e);
    llmux_engine_free(e);
    free(env_copy);
    printf("test_reload: %d checks passed\n", checks_passed());
    return 0;
}
