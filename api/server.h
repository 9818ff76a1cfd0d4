/* The HTTP server: libmicrohttpd, routing, authentication, limits, and the
 * handlers of every endpoint (REST, server-sent events, OpenAI-compatible
 * inference, Prometheus, the dashboard's static files).
 *
 * The daemon starts one server with its configuration and an api_backend
 * (api/backend.h); the server's threads call the backend and the compute
 * core (inference), never SQLite. */
#ifndef API_SERVER_H
#define API_SERVER_H

#include <stddef.h>

#include "backend.h"

typedef struct api_server_cfg {
    const char *host;        /* "127.0.0.1" (default), "::1", "0.0.0.0", ... */
    int port;                /* 0: any free port (read it back with api_server_port) */
    int listen_fd;           /* >= 0: an inherited listening socket (systemd's
                              * LISTEN_FDS); host/port are then ignored */
    const char *models_dir;  /* POST /v1/models paths must resolve inside it;
                              * NULL refuses registration by path */
    const char *web_dir;     /* dashboard assets; NULL: no dashboard */
    size_t max_body;         /* bytes of a JSON request body (default 1 MiB) */
    size_t max_upload;       /* bytes of a file upload (default 512 MiB) */
    int max_json_depth;      /* default 32 */
    size_t max_string;       /* bytes of one JSON string (default 1 MiB) */
    int max_tokens;          /* cap of max_tokens in completions (default 2048) */
    int max_connections;     /* default 256 (beyond it 429; /healthz and /readyz
                              * are answered from a reserve of 64 more) */
    int max_connections_per_ip; /* open connections from one address (default 64);
                              * more are closed at accept */
    int max_streams;         /* concurrent SSE streams (default 64) */
    int timeout_s;           /* idle connection timeout (default 30) */
    int header_timeout_s;    /* a request's headers must be complete this long
                              * after the connection opened or the previous
                              * request ended, and a body may not stall
                              * longer (default 10) */
    int heartbeat_s;         /* SSE heartbeat period (default 15) */
    int bf16;                /* chat endpoints compute in bf16, models held in bf16 (default 0) */
} api_server_cfg;

typedef struct api_server api_server;

/* Fills cfg with the defaults above. */
void api_server_cfg_init(api_server_cfg *cfg);

/* Starts listening. Refuses (NULL, reason in err) a non-loopback host when
 * the backend has no API keys. The backend table is copied; be->ud must
 * outlive the server. */
api_server *api_server_start(const api_server_cfg *cfg, const api_backend *be,
                             char err[AL_ERRLEN]);
/* The bound port (after port 0). */
int api_server_port(const api_server *s);
/* Draining: new jobs and uploads get 503 while the daemon shuts down. */
void api_server_set_draining(api_server *s, int on);
/* Ends open streams, stops the threads and frees the server. NULL is a no-op. */
void api_server_stop(api_server *s);
/* Bytes of the models the chat endpoints hold loaded (their cache). */
int64_t api_server_models_memory(api_server *s);

/* The body of GET /v1/methods (api/h_methods.c: lib/train/methods.h's
 * registry as a list object); the caller owns it. NULL when memory runs out. */
json_t *api_methods_json(void);

#endif
