/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Test-only: loads the seccomp part of virtsnapd.service's sandbox (the syscall allow-list and
 * the directives systemd implements with seccomp), then execs a program, so that machines
 * without systemd as PID 1 can still run the agent under the filter its unit asks for. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define N_ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))

typedef struct {
    const char *name;
    int value;
} VsNamedValue;

static const VsNamedValue errno_names[] = {
    {"EPERM", EPERM},     {"EACCES", EACCES},         {"ENOSYS", ENOSYS}, {"EINVAL", EINVAL},
    {"ENOTSUP", ENOTSUP}, {"EOPNOTSUPP", EOPNOTSUPP}, {"EIO", EIO},
};

static const VsNamedValue family_names[] = {
    {"AF_UNIX", AF_UNIX},   {"AF_LOCAL", AF_LOCAL},     {"AF_INET", AF_INET},
    {"AF_INET6", AF_INET6}, {"AF_NETLINK", AF_NETLINK}, {"AF_PACKET", AF_PACKET},
    {"AF_ALG", AF_ALG},     {"AF_VSOCK", AF_VSOCK},
};

static const int namespace_flags[] = {CLONE_NEWNS,  CLONE_NEWUTS, CLONE_NEWIPC,   CLONE_NEWUSER,
                                      CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP};

static int verbose;

static void
usage(FILE *out)
{
    fprintf(
        out,
        "Usage: vs-seccomp-run [OPTION...] -- PROGRAM [ARG...]\n"
        "Loads a seccomp filter like systemd's for a unit, then execs PROGRAM.\n\n"
        "  --syscalls FILE              allow exactly the syscalls named in FILE (one a line);\n"
        "                               others kill the process (SIGSYS) unless --errno\n"
        "  --errno NAME|NUMBER          SystemCallErrorNumber=: filtered calls fail with it\n"
        "  --address-families LIST      RestrictAddressFamilies= (comma-separated AF_* names)\n"
        "  --deny-write-execute         MemoryDenyWriteExecute=yes\n"
        "  --restrict-namespaces        RestrictNamespaces=yes\n"
        "  --restrict-realtime          RestrictRealtime=yes\n"
        "  --restrict-suid-sgid         RestrictSUIDSGID=yes\n"
        "  --lock-personality           LockPersonality=yes\n"
        "  --verbose                    say what was loaded (to stderr)\n"
        "The filters always cover the native architecture only "
        "(SystemCallArchitectures=native).\n");
}

static int
lookup_value(const VsNamedValue *table, size_t n, const char *name, int *value)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(table[i].name, name) == 0) {
            *value = table[i].value;
            return 0;
        }
    }
    char *end = NULL;
    long number = strtol(name, &end, 10);
    if (*name == '\0' || *end != '\0' || number < 0 || number > 4095)
        return -1;
    *value = (int)number;
    return 0;
}

static int
check(int r, const char *what)
{
    if (r < 0) {
        fprintf(stderr, "vs-seccomp-run: %s: %s\n", what, strerror(-r));
        exit(125);
    }
    return r;
}

/* Foreign architectures (i386 int 0x80 on x86_64) are killed, as systemd does for "native". */
static scmp_filter_ctx
filter_new(uint32_t default_action)
{
    scmp_filter_ctx ctx = seccomp_init(default_action);
    if (!ctx) {
        fprintf(stderr, "vs-seccomp-run: seccomp_init failed\n");
        exit(125);
    }
    check(seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS), "bad-arch action");
    return ctx;
}

static void
add_allow_list(scmp_filter_ctx ctx, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "vs-seccomp-run: %s: %s\n", path, strerror(errno));
        exit(125);
    }
    char line[256];
    unsigned allowed = 0, foreign = 0;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, " \t\r\n#")] = '\0';
        if (line[0] == '\0')
            continue;
        int nr = seccomp_syscall_resolve_name(line);
        /* Names systemd lists for other architectures (fcntl64, _llseek...) do not exist
         * here: systemd skips them too. */
        if (nr == __NR_SCMP_ERROR || nr < 0) {
            foreign++;
            continue;
        }
        check(seccomp_rule_add_exact(ctx, SCMP_ACT_ALLOW, nr, 0), line);
        allowed++;
    }
    fclose(f);
    if (allowed == 0) {
        fprintf(stderr, "vs-seccomp-run: %s names no syscall of this architecture\n", path);
        exit(125);
    }
    if (verbose)
        fprintf(stderr, "vs-seccomp-run: %u syscalls allowed, %u names not on this arch\n", allowed,
                foreign);
}

static void
add_rule(scmp_filter_ctx ctx, int err, const char *name, unsigned count,
         const struct scmp_arg_cmp *cmp)
{
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR || nr < 0)
        return;
    check(seccomp_rule_add_exact_array(ctx, SCMP_ACT_ERRNO(err), nr, count, cmp), name);
}

/* systemd: socket() of a family not listed fails with EAFNOSUPPORT. */
static void
add_address_families(scmp_filter_ctx ctx, char *list)
{
    int allowed[AF_MAX + 1] = {0};
    for (char *tok = strtok(list, ", "); tok; tok = strtok(NULL, ", ")) {
        int af;
        if (lookup_value(family_names, N_ELEMENTS(family_names), tok, &af) < 0 || af > AF_MAX) {
            fprintf(stderr, "vs-seccomp-run: unknown address family %s\n", tok);
            exit(125);
        }
        allowed[af] = 1;
    }
    for (int af = 0; af < AF_MAX; af++) {
        if (allowed[af])
            continue;
        struct scmp_arg_cmp cmp = SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)af);
        add_rule(ctx, EAFNOSUPPORT, "socket", 1, &cmp);
    }
    struct scmp_arg_cmp above = SCMP_A0(SCMP_CMP_GE, (scmp_datum_t)AF_MAX);
    add_rule(ctx, EAFNOSUPPORT, "socket", 1, &above);
}

/* systemd: no mapping both writable and executable, no mprotect() adding PROT_EXEC. */
static void
add_deny_write_execute(scmp_filter_ctx ctx)
{
    const scmp_datum_t wx = PROT_WRITE | PROT_EXEC;
    struct scmp_arg_cmp mmap_wx = SCMP_A2(SCMP_CMP_MASKED_EQ, wx, wx);
    struct scmp_arg_cmp prot_x = SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC);
    struct scmp_arg_cmp shm_x = SCMP_A2(SCMP_CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC);
    add_rule(ctx, EPERM, "mmap", 1, &mmap_wx);
    add_rule(ctx, EPERM, "mprotect", 1, &prot_x);
    add_rule(ctx, EPERM, "pkey_mprotect", 1, &prot_x);
    add_rule(ctx, EPERM, "shmat", 1, &shm_x);
}

/* systemd: no new namespaces; clone3() cannot be inspected, so it is ENOSYS and libc
 * falls back to clone(). */
static void
add_restrict_namespaces(scmp_filter_ctx ctx)
{
    for (size_t i = 0; i < N_ELEMENTS(namespace_flags); i++) {
        scmp_datum_t flag = (scmp_datum_t)namespace_flags[i];
        struct scmp_arg_cmp a0 = SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag);
        add_rule(ctx, EPERM, "unshare", 1, &a0);
        add_rule(ctx, EPERM, "clone", 1, &a0);
    }
    add_rule(ctx, EPERM, "setns", 0, NULL);
    add_rule(ctx, ENOSYS, "clone3", 0, NULL);
}

static void
add_restrict_realtime(scmp_filter_ctx ctx)
{
    const int policies[] = {SCHED_FIFO, SCHED_RR};
    for (size_t i = 0; i < N_ELEMENTS(policies); i++) {
        /* SCHED_RESET_ON_FORK may be or-ed into the policy. */
        struct scmp_arg_cmp a1 =
            SCMP_A1(SCMP_CMP_MASKED_EQ, ~(scmp_datum_t)SCHED_RESET_ON_FORK & 0xffffffffu,
                    (scmp_datum_t)policies[i]);
        add_rule(ctx, EPERM, "sched_setscheduler", 1, &a1);
    }
}

static void
add_restrict_suid_sgid(scmp_filter_ctx ctx)
{
    const scmp_datum_t bits[] = {S_ISUID, S_ISGID};
    for (size_t i = 0; i < N_ELEMENTS(bits); i++) {
        struct scmp_arg_cmp a1 = SCMP_A1(SCMP_CMP_MASKED_EQ, bits[i], bits[i]);
        struct scmp_arg_cmp a2 = SCMP_A2(SCMP_CMP_MASKED_EQ, bits[i], bits[i]);
        add_rule(ctx, EPERM, "chmod", 1, &a1);
        add_rule(ctx, EPERM, "fchmod", 1, &a1);
        add_rule(ctx, EPERM, "fchmodat", 1, &a2);
        add_rule(ctx, EPERM, "mkdir", 1, &a1);
        add_rule(ctx, EPERM, "mkdirat", 1, &a2);
    }
}

/* systemd: only the current personality may be set (or queried through it). */
static void
add_lock_personality(scmp_filter_ctx ctx)
{
    int current = personality(0xffffffff);
    struct scmp_arg_cmp a0 = SCMP_A0(SCMP_CMP_NE, (scmp_datum_t)current);
    add_rule(ctx, EPERM, "personality", 1, &a0);
}

int
main(int argc, char **argv)
{
    enum {
        OPT_SYSCALLS = 1,
        OPT_ERRNO,
        OPT_FAMILIES,
        OPT_MDWE,
        OPT_NAMESPACES,
        OPT_REALTIME,
        OPT_SUID,
        OPT_PERSONALITY,
        OPT_VERBOSE,
        OPT_HELP,
    };
    static const struct option options[] = {
        {"syscalls", required_argument, NULL, OPT_SYSCALLS},
        {"errno", required_argument, NULL, OPT_ERRNO},
        {"address-families", required_argument, NULL, OPT_FAMILIES},
        {"deny-write-execute", no_argument, NULL, OPT_MDWE},
        {"restrict-namespaces", no_argument, NULL, OPT_NAMESPACES},
        {"restrict-realtime", no_argument, NULL, OPT_REALTIME},
        {"restrict-suid-sgid", no_argument, NULL, OPT_SUID},
        {"lock-personality", no_argument, NULL, OPT_PERSONALITY},
        {"verbose", no_argument, NULL, OPT_VERBOSE},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    const char *syscalls = NULL;
    char *families = NULL;
    int err = -1;
    int mdwe = 0, namespaces = 0, realtime = 0, suid = 0, lock_personality = 0;
    int opt;

    while ((opt = getopt_long(argc, argv, "+", options, NULL)) != -1) {
        switch (opt) {
        case OPT_SYSCALLS:
            syscalls = optarg;
            break;
        case OPT_ERRNO:
            if (lookup_value(errno_names, N_ELEMENTS(errno_names), optarg, &err) < 0) {
                fprintf(stderr, "vs-seccomp-run: unknown errno %s\n", optarg);
                return 125;
            }
            break;
        case OPT_FAMILIES:
            families = optarg;
            break;
        case OPT_MDWE:
            mdwe = 1;
            break;
        case OPT_NAMESPACES:
            namespaces = 1;
            break;
        case OPT_REALTIME:
            realtime = 1;
            break;
        case OPT_SUID:
            suid = 1;
            break;
        case OPT_PERSONALITY:
            lock_personality = 1;
            break;
        case OPT_VERBOSE:
            verbose = 1;
            break;
        case OPT_HELP:
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 125;
        }
    }
    if (optind >= argc || !syscalls) {
        usage(stderr);
        return 125;
    }

    /* Filter 1: the allow-list. Filter 2: the argument checks, which fail with their own
     * errno; the kernel applies the stricter verdict of the two, as with systemd's filters. */
    scmp_filter_ctx allow = filter_new(err < 0 ? SCMP_ACT_KILL_PROCESS : SCMP_ACT_ERRNO(err));
    add_allow_list(allow, syscalls);
    scmp_filter_ctx args = filter_new(SCMP_ACT_ALLOW);
    if (families)
        add_address_families(args, families);
    if (mdwe)
        add_deny_write_execute(args);
    if (namespaces)
        add_restrict_namespaces(args);
    if (realtime)
        add_restrict_realtime(args);
    if (suid)
        add_restrict_suid_sgid(args);
    if (lock_personality)
        add_lock_personality(args);

    /* libseccomp sets no_new_privs itself, as the unit's NoNewPrivileges=yes does. */
    check(seccomp_load(args), "loading the argument filter");
    check(seccomp_load(allow), "loading the allow-list");
    seccomp_release(args);
    seccomp_release(allow);
    if (verbose)
        fprintf(stderr, "vs-seccomp-run: filter loaded (filtered calls: %s), exec %s\n",
                err < 0 ? "SIGSYS" : strerror(err), argv[optind]);

    execvp(argv[optind], argv + optind);
    fprintf(stderr, "vs-seccomp-run: %s: %s\n", argv[optind], strerror(errno));
    return 127;
}
