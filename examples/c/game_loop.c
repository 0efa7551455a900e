/*
 * game_loop: llmux in a game-style frame loop.
 *
 * usage: game_loop BASE_URL [BASE_URL...]
 *
 * Each BASE_URL is an OpenAI-compatible server (e.g. one printed by
 * `llmux-fleet --servers a,b --exit-on-stdin-eof`); provider i is "p<i>"
 * with base_url BASE_URL/v1, and all of them serve the model "demo/chat".
 *
 * The loop runs at about 60 frames per second. Each frame it polls llmux
 * once with timeout 0 (never blocks), "renders" whatever text arrived, and
 * sleeps until the next frame. When the request ends it prints the routing
 * record: which endpoint served it, every attempt, latency, usage and cost.
 *
 * Build: cc -std=c11 game_loop.c $(pkg-config --cflags --libs llmux)
 */
#define _POSIX_C_SOURCE 200809L

#include "llmux.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FPS 60
#define MAX_FRAMES (FPS * 30) /* give up after 30 s */
#define EVENTS_PER_FRAME 16

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* Writes the code point `cp` as UTF-8. */
static void put_utf8(unsigned long cp, FILE *out) {
    if (cp < 0x80) {
        fputc((int)cp, out);
    } else if (cp < 0x800) {
        fputc((int)(0xC0 | (cp >> 6)), out);
        fputc((int)(0x80 | (cp & 0x3F)), out);
    } else if (cp < 0x10000) {
        fputc((int)(0xE0 | (cp >> 12)), out);
        fputc((int)(0x80 | ((cp >> 6) & 0x3F)), out);
        fputc((int)(0x80 | (cp & 0x3F)), out);
    } else {
        fputc((int)(0xF0 | (cp >> 18)), out);
        fputc((int)(0x80 | ((cp >> 12) & 0x3F)), out);
        fputc((int)(0x80 | ((cp >> 6) & 0x3F)), out);
        fputc((int)(0x80 | (cp & 0x3F)), out);
    }
}

/*
 * Prints the JSON string value that starts at `p` (just after its opening
 * quote), decoding escapes. A real program would use a JSON library; the
 * chunks are plain OpenAI `chat.completion.chunk` objects.
 */
static void print_json_string(const char *p, FILE *out) {
    while (*p && *p != '"') {
        if (*p != '\\') {
            fputc(*p++, out);
            continue;
        }
        p++;
        switch (*p) {
        case 'n': fputc('\n', out); break;
        case 't': fputc('\t', out); break;
        case 'r': break;
        case 'b': case 'f': break;
        case 'u': {
            unsigned long cp = strtoul((char[5]){p[1], p[2], p[3], p[4], 0}, NULL, 16);
            p += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && p[1] == '\\' && p[2] == 'u') {
                unsigned long lo = strtoul((char[5]){p[3], p[4], p[5], p[6], 0}, NULL, 16);
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            }
            put_utf8(cp, out);
            break;
        }
        case '\0': return;
        default: fputc(*p, out); break; /* \" \\ \/ */
        }
        p++;
    }
}

/* Renders the text delta of one chunk: choices[0].delta.content. */
static void render_chunk(const char *json) {
    const char *delta = strstr(json, "\"delta\":");
    const char *content = delta ? strstr(delta, "\"content\":\"") : NULL;
    if (content) {
        print_json_string(content + strlen("\"content\":\""), stdout);
        fflush(stdout);
    }
}

/* Prints the "routing" object of a terminal event (matching braces). */
static void print_routing(const char *json) {
    const char *p = strstr(json, "\"routing\":");
    if (!p) {
        printf("(no routing record) %s\n", json);
        return;
    }
    p += strlen("\"routing\":");
    int depth = 0, in_string = 0;
    const char *q = p;
    for (; *q; q++) {
        if (in_string) {
            if (*q == '\\' && q[1]) q++;
            else if (*q == '"') in_string = 0;
        } else if (*q == '"') {
            in_string = 1;
        } else if (*q == '{') {
            depth++;
        } else if (*q == '}' && --depth == 0) {
            q++;
            break;
        }
    }
    printf("routing: %.*s\n", (int)(q - p), p);
}

static char *build_config(int n, char **urls) {
    size_t cap = 512;
    for (int i = 0; i < n; i++) cap += 2 * strlen(urls[i]) + 160;
    char *cfg = malloc(cap);
    if (!cfg) return NULL;
    size_t len = (size_t)snprintf(cfg, cap, "{\"providers\":[");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(cfg + len, cap - len,
                                "%s{\"slug\":\"p%d\",\"protocol\":\"openai\",\"base_url\":\"%s/v1\"}",
                                i ? "," : "", i, urls[i]);
    len += (size_t)snprintf(cfg + len, cap - len, "],\"models\":[{\"slug\":\"demo/chat\",\"endpoints\":[");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(cfg + len, cap - len,
                                "%s{\"provider\":\"p%d\",\"upstream_model\":\"mock-%d\","
                                "\"price\":{\"prompt\":1.0,\"completion\":2.0}}",
                                i ? "," : "", i, i);
    snprintf(cfg + len, cap - len, "]}]}");
    return cfg;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s BASE_URL [BASE_URL...]\n", argv[0]);
        return 2;
    }
    printf("llmux %s\n", llmux_version());

    char *cfg = build_config(argc - 1, argv + 1);
    if (!cfg) return 1;
    llmux_engine *eng = NULL;
    char *err = NULL;
    llmux_result rc = llmux_engine_new(cfg, strlen(cfg), &eng, &err);
    free(cfg);
    if (rc != LLMUX_RESULT_OK) {
        fprintf(stderr, "llmux_engine_new: %s: %s\n", llmux_result_text(rc), err ? err : "");
        llmux_string_free(err);
        return 1;
    }

    /* "mock" asks the mock server to pace its chunks so the text arrives
     * over several frames. llmux passes unknown fields through: remove it
     * when talking to a real provider. */
    const char *req = "{\"model\":\"demo/chat\",\"stream\":true,"
                      "\"messages\":[{\"role\":\"user\",\"content\":\"Say hello.\"}],"
                      "\"mock\":{\"chunk_delay_ms\":40}}";
    uint64_t id = 0;
    rc = llmux_submit(eng, LLMUX_PROTOCOL_OPENAI, req, strlen(req), &id, &err);
    if (rc != LLMUX_RESULT_OK) {
        fprintf(stderr, "llmux_submit: %s: %s\n", llmux_result_text(rc), err ? err : "");
        llmux_string_free(err);
        llmux_engine_free(eng);
        return 1;
    }

    int status = 1, finished = 0, frame = 0, chunks = 0, frames_with_text = 0;
    printf("text: ");
    fflush(stdout);
    for (; frame < MAX_FRAMES && !finished; frame++) {
        llmux_event evs[EVENTS_PER_FRAME];
        size_t n = 0;
        if (llmux_poll(eng, evs, EVENTS_PER_FRAME, 0, &n) != LLMUX_RESULT_OK) break;
        int had_text = 0;
        for (size_t i = 0; i < n; i++) {
            if (evs[i].request_id != id) continue;
            switch (evs[i].kind) {
            case LLMUX_EVENT_KIND_CHUNK:
                chunks++;
                had_text = 1;
                render_chunk(evs[i].data);
                break;
            case LLMUX_EVENT_KIND_DONE:
                printf("\n");
                print_routing(evs[i].data);
                status = 0;
                finished = 1;
                break;
            case LLMUX_EVENT_KIND_ERROR:
                printf("\nerror: %s\n", evs[i].data);
                finished = 1;
                break;
            default:
                break; /* a newer kind: ignore */
            }
        }
        llmux_events_free(evs, n);
        frames_with_text += had_text;
        /* ... update the world, draw the frame ... */
        sleep_ms(1000 / FPS);
    }
    if (!finished) printf("\ngave up after %d frames\n", frame);
    printf("frames: %d, chunks: %d, frames with new text: %d\n", frame, chunks, frames_with_text);
    llmux_engine_free(eng);
    return status;
}
