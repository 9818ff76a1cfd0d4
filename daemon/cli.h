/* Subcommands of the alignd binary. Each returns the process exit status:
 * 0 on success, 1 on a runtime failure (message on stderr), 2 on bad usage. */
#ifndef CLI_H
#define CLI_H

int cli_init_model(int argc, char **argv);
int cli_logprobs(int argc, char **argv);
int cli_generate(int argc, char **argv);
int cli_train(int argc, char **argv);
int cli_tokenize(int argc, char **argv);
int cli_template(int argc, char **argv);
int cli_validate(int argc, char **argv);
int cli_eval(int argc, char **argv);
int cli_serve(int argc, char **argv);
int cli_keys(int argc, char **argv);
int cli_pull(int argc, char **argv);

/* Flag parsing shared by the subcommands: --name VALUE pairs. */
typedef struct cli_flag {
    const char *name;      /* "--layers" */
    const char *value;     /* set by cli_parse, NULL when absent */
    int is_switch;         /* takes no value; value becomes "1" */
} cli_flag;
/* Returns 0, or 2 after printing the offending argument to stderr. */
int cli_parse(int argc, char **argv, cli_flag *flags, int n);
/* Strict number parsing; on failure print "<flag>: <why>" and return 2. */
int cli_int(const cli_flag *f, long lo, long hi, long *out);
int cli_float(const cli_flag *f, double lo, double hi, double *out);
/* Parses "1,2,3" into a malloc'd array; 2 on a malformed list. */
int cli_ids(const char *flag, const char *s, int **ids, int *n);
/* Signal sig runs fn (SIG_IGN: ignored), with no flags and no signal
 * blocked meanwhile. */
void cli_signal(int sig, void (*fn)(int));

#endif
