/*
 * insn_count: a QEMU TCG plugin (plugin API version 1, QEMU 7.2) that counts the guest
 * instructions a user-mode process executes and writes {"insns": N, "pid": P, ...} to a file.
 *
 *   qemu-aarch64 -cpu cortex-a72 -plugin ./libinsn_count.so,outfile=/tmp/n.json PROGRAM ...
 *
 * Arguments: outfile=PATH (default: write the JSON line to stderr);
 * mode=inline (default: one inline 64-bit add per executed translation block, fast) or
 * mode=atomic (a callback with an atomic add per block: exact when guest threads run in
 * parallel, where inline adds from two threads can race and lose a few counts; slower).
 *
 * What is counted: every instruction of every translation block the process executes, in all of
 * its threads, until it exits (exit_group). A block cut short by a fault or signal still counts
 * whole. Not counted: programs it starts with execve (they run under binfmt_misc's
 * qemu-aarch64-static, which has no plugins) and, after execve, the process itself. A child made
 * with fork (no exec) inherits the counter and writes its own file, outfile.PID, whose count
 * includes the parent's instructions up to the fork ("forked_from").
 *
 * Debian ships no qemu-plugin.h, so the few declarations used are copied from QEMU 7.2's
 * include/qemu/qemu-plugin.h below.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- from QEMU 7.2 include/qemu/qemu-plugin.h (API version 1) ---- */
#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))
typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t {
    const char *target_name;
    struct {
        int min;
        int cur;
    } version;
    bool system_emulation;
    union {
        struct {
            int smp_vcpus;
            int max_vcpus;
        } system;
    };
} qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
/* ---- end of QEMU's declarations ---- */

QEMU_PLUGIN_EXPORT int qemu_plugin_version = 1;

static uint64_t insns;
static bool atomic_mode;
static const char *outfile;
static pid_t first_pid;
static const char *target = "?";

static void tb_exec_atomic(unsigned int vcpu_index, void *userdata)
{
    (void)vcpu_index;
    __atomic_fetch_add(&insns, (uint64_t)(uintptr_t)userdata, __ATOMIC_RELAXED);
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    if (atomic_mode) {
        qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_exec_atomic, QEMU_PLUGIN_CB_NO_REGS,
                                             (void *)(uintptr_t)n);
    } else {
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &insns, n);
    }
}

static void at_exit(qemu_plugin_id_t id, void *userdata)
{
    (void)id;
    (void)userdata;
    char json[256];
    pid_t pid = getpid();
    uint64_t n = __atomic_load_n(&insns, __ATOMIC_RELAXED);
    if (pid == first_pid) {
        snprintf(json, sizeof json, "{\"insns\": %" PRIu64 ", \"pid\": %d, \"target\": \"%s\", \"mode\": \"%s\"}\n",
                 n, (int)pid, target, atomic_mode ? "atomic" : "inline");
    } else {
        snprintf(json, sizeof json,
                 "{\"insns\": %" PRIu64 ", \"pid\": %d, \"forked_from\": %d, \"target\": \"%s\", \"mode\": \"%s\"}\n",
                 n, (int)pid, (int)first_pid, target, atomic_mode ? "atomic" : "inline");
    }
    if (!outfile) {
        fputs(json, stderr);  /* qemu_plugin_outs prints only under -d plugin */
        return;
    }
    char path[4096];
    if (pid == first_pid) {
        snprintf(path, sizeof path, "%s", outfile);
    } else {
        snprintf(path, sizeof path, "%s.%d", outfile, (int)pid);
    }
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "insn_count: cannot open %s; the count: %s", path, json);
        return;
    }
    fputs(json, f);
    fclose(f);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "outfile=", 8) == 0) {
            outfile = argv[i] + 8;
        } else if (strcmp(argv[i], "mode=atomic") == 0) {
            atomic_mode = true;
        } else if (strcmp(argv[i], "mode=inline") == 0) {
            atomic_mode = false;
        } else {
            fprintf(stderr, "insn_count: unknown argument '%s' (outfile=PATH, mode=inline|atomic)\n",
                    argv[i]);
            return -1;
        }
    }
    if (info && info->target_name) {
        target = info->target_name;
    }
    first_pid = getpid();
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
