/* alignd: entry point and subcommand dispatch. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fputs("usage: alignd [<command>] [options]\n"
          "\n"
          "commands:\n"
          "  serve       [--listen HOST:PORT] [--state-dir DIR] [--models-dir DIR] [--workers N]\n"
          "              [--config FILE] [--check-config] [--<key> VALUE ...]   (the default)\n"
          "  keys create [--name N] [--read-only] [--state-dir DIR]\n"
          "  pull        ORG/NAME[@REVISION] [--include GLOB]... [--models-dir DIR]\n"
          "              (downloads into the Hugging Face cache; prints the snapshot folder)\n"
          "  init-model  --arch gpt2|llama [--layers N --hidden N --heads N --kv-heads N\n"
          "              --intermediate N --vocab N --context N --seed S] --out DIR\n"
          "  logprobs    --model DIR (--ids 1,2,3,... [--prompt-len K] |\n"
          "              --prompt TEXT --completion TEXT [--chat]) [--dtype bf16|fp32]\n"
          "  generate    --model DIR (--ids 1,2,3 | --prompt TEXT [--chat]) [--max-new-tokens N]\n"
          "              [--temperature T]\n"
          "              [--top-k K] [--top-p P] [--seed S] [--dtype bf16|fp32]\n"
          "  tokenize    --model DIR [--jsonl] [--chat] [--no-special]   (stdin -> id arrays)\n"
          "  template    (--model DIR | --template FILE.jinja) [--add-generation-prompt]\n"
          "  validate    [--model DIR] --data FILE.jsonl [--max-length N] [--method M] [--dedupe]\n"
          "  train       JOB.json [--resume CHECKPOINT_DIR]\n"
          "  eval        --model DIR --task NAME [--n N]\n"
          "\n"
          "environment: ALIGND_THREADS sets the compute pool size (default: all cores);\n"
          "  HF_HOME, HF_HUB_CACHE, HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE as huggingface_hub reads them\n",
          f);
}

int main(int argc, char **argv) {
    /* no command, or options only: the daemon */
    if (argc < 2 || argv[1][0] == '-') {
        if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
            usage(stdout);
            return 0;
        }
        return cli_serve(argc - 1, argv + 1);
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "serve")) return cli_serve(argc - 2, argv + 2);
    if (!strcmp(cmd, "keys")) return cli_keys(argc - 2, argv + 2);
    if (!strcmp(cmd, "pull")) return cli_pull(argc - 2, argv + 2);
    if (!strcmp(cmd, "init-model")) return cli_init_model(argc - 2, argv + 2);
    if (!strcmp(cmd, "logprobs")) return cli_logprobs(argc - 2, argv + 2);
    if (!strcmp(cmd, "generate")) return cli_generate(argc - 2, argv + 2);
    if (!strcmp(cmd, "train")) return cli_train(argc - 2, argv + 2);
    if (!strcmp(cmd, "tokenize")) return cli_tokenize(argc - 2, argv + 2);
    if (!strcmp(cmd, "template")) return cli_template(argc - 2, argv + 2);
    if (!strcmp(cmd, "validate")) return cli_validate(argc - 2, argv + 2);
    if (!strcmp(cmd, "eval")) return cli_eval(argc - 2, argv + 2);
    fprintf(stderr, "alignd: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
