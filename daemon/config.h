/* The daemon's configuration: built-in defaults, then the configuration file,
 * then ALIGND_* environment variables, then command-line flags, each
 * overriding the one before.
 *
 * File: --config FILE, else $CONFIGURATION_DIRECTORY/alignd.conf (systemd),
 * else /etc/alignd/alignd.conf; the default files may be absent. One
 * `key = value` per line, '#' starts a comment, values may be "quoted".
 *
 *   key              env                      flag               default
 *   listen           ALIGND_LISTEN            --listen           127.0.0.1:8080
 *   state_dir        ALIGND_STATE_DIR         --state-dir        $STATE_DIRECTORY, else ./alignd-state
 *   models_dir       ALIGND_MODELS_DIR        --models-dir       <state_dir>/models
 *   jobs_dir         ALIGND_JOBS_DIR          --jobs-dir         <state_dir>/jobs
 *   migrations_dir   ALIGND_MIGRATIONS_DIR    --migrations-dir   <prefix>/share/alignd/migrations when the
 *                                                                binary is <prefix>/bin/alignd, else the build's
 *   web_dir          ALIGND_WEB_DIR           --web-dir          the same for web ("" = no dashboard)
 *   workers          ALIGND_WORKERS           --workers          1
 *   threads          ALIGND_THREADS           --threads          0 (every core)
 *   dtype            ALIGND_DTYPE             --dtype            auto (bf16, fp32: chat endpoints, reward
 *                                                                models and the judge; auto = bf16 where
 *                                                                the CPU multiplies bf16 natively)
 *   memory_limit     ALIGND_MEMORY_LIMIT      --memory-limit     0 (MemAvailable at start); 512M, 8G ...
 *   log_level        ALIGND_LOG_LEVEL         --log-level        info (error, warn, notice, info, debug)
 *   stop_timeout     ALIGND_STOP_TIMEOUT      --stop-timeout     120 (seconds to checkpoint on SIGTERM)
 *   max_body         ALIGND_MAX_BODY          --max-body         1M
 *   max_upload       ALIGND_MAX_UPLOAD        --max-upload       512M
 *   max_json_depth   ALIGND_MAX_JSON_DEPTH    --max-json-depth   32
 *   max_string       ALIGND_MAX_STRING        --max-string       1M
 *   max_tokens       ALIGND_MAX_TOKENS        --max-tokens       2048
 *   max_connections  ALIGND_MAX_CONNECTIONS   --max-connections  256
 *   max_connections_per_ip ALIGND_MAX_CONNECTIONS_PER_IP --max-connections-per-ip 64
 *   max_streams      ALIGND_MAX_STREAMS       --max-streams      64
 *   timeout          ALIGND_TIMEOUT           --timeout          30 (idle connection seconds)
 *   header_timeout   ALIGND_HEADER_TIMEOUT    --header-timeout   10 (seconds for a request's headers,
 *                                                                and the longest stall of a body)
 *   heartbeat        ALIGND_HEARTBEAT         --heartbeat        15 (SSE heartbeat seconds)
 *   allow_downloads  ALIGND_ALLOW_DOWNLOADS   --allow-downloads  false (fetch ORG/NAME models from the Hub)
 *   hub_cache        ALIGND_HUB_CACHE         --hub-cache        "" (the Hugging Face cache of the environment:
 *                                                                HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub)
 *   launcher         ALIGND_LAUNCHER          --launcher         "" (how jobs with resources.processes > 1 start:
 *                                                                "mpirun --hostfile H -np {processes}", an srun line;
 *                                                                "": such jobs are refused; daemon/launch.h)
 *   shared_dir       ALIGND_SHARED_DIR        --shared-dir       "" (where launched jobs write, seen by every
 *                                                                node: "" = jobs_dir)
 *   launcher_retries ALIGND_LAUNCHER_RETRIES  --launcher-retries 2 (attempts requeued after a rank dies)
 */
#ifndef DAEMON_CONFIG_H
#define DAEMON_CONFIG_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "api/server.h"

#define CFG_PATH 4096

typedef struct daemon_cfg {
    char listen[300];
    char host[256];
    int port;
    char state_dir[CFG_PATH];
    char models_dir[CFG_PATH];
    char jobs_dir[CFG_PATH];
    char migrations_dir[CFG_PATH];
    char web_dir[CFG_PATH];
    long workers, threads;
    char dtype[8];                /* "auto", "bf16", "fp32" */
    int64_t memory_limit;
    char log_level_name[16];
    int log_level;
    double stop_timeout;
    int64_t max_body, max_upload, max_string;
    long max_json_depth, max_tokens, max_connections, max_connections_per_ip, max_streams, timeout,
        header_timeout, heartbeat;
    long allow_downloads;         /* 0/1 */
    char hub_cache[CFG_PATH];
    char launcher[2048];
    char shared_dir[CFG_PATH];
    long launcher_retries;
    char config_file[CFG_PATH];   /* the file read, "" when none */
} daemon_cfg;

/* Loads defaults, file, environment and flags (argv: the serve arguments).
 * Returns 0, or 2 with the reason in err ("alignd.conf:7: workers: 'x' is not
 * an integer"). check_config is set when --check-config was given. */
int config_load(daemon_cfg *c, int argc, char **argv, int *check_config, char err[AL_ERRLEN]);
/* Writes the effective configuration, one key = value per line. */
void config_print(const daemon_cfg *c, FILE *f);
/* The api/ server's settings from c. */
void config_server(const daemon_cfg *c, api_server_cfg *s);
/* 1 when the dtype setting (resolved: "auto" by the CPU) is bf16. */
int config_bf16(const daemon_cfg *c);

#endif
