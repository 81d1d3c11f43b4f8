/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The words a caller may give as CreateSnapshot option values, and the keys of a domain
 * policy: one table each, shared by the options, the policy and anyone who checks them. */
#pragma once

/* Value words, in the order of the enums in agent/vs-options.h (VsMethod, VsQuiesce,
 * VsFormat, VsCopy): an enum value indexes its word. NULL-terminated. */
static const char *const vs_method_words[] = {"auto", "live",  "cold",
                                              "rbd",  "mixed", (const char *)0};
static const char *const vs_quiesce_words[] = {"off", "try", "require", (const char *)0};
static const char *const vs_format_words[] = {"qcow2", "raw", (const char *)0};
static const char *const vs_copy_words[] = {"shallow", "direct", (const char *)0};

/* Policy keys: GetPolicy/SetPolicy's a{ss} and the elements of <policy> in the domain's
 * <metadata>. quiesce, method and format take the option words above. */
#define VS_POLICY_ON_STOP "on-stop" /* none|snapshot */
#define VS_POLICY_EVERY   "every"   /* a duration: 30s, 15m, 6h, 1d */
#define VS_POLICY_KEEP    "keep"    /* 1..10000 */
#define VS_POLICY_QUIESCE "quiesce"
#define VS_POLICY_METHOD  "method"
#define VS_POLICY_FORMAT  "format"

/* on-stop's one value; "none" (or "") clears any key. */
#define VS_POLICY_WORD_SNAPSHOT "snapshot"
#define VS_POLICY_WORD_NONE     "none"

static const char *const vs_policy_keys[] = {VS_POLICY_ON_STOP, VS_POLICY_EVERY,  VS_POLICY_KEEP,
                                             VS_POLICY_QUIESCE, VS_POLICY_METHOD, VS_POLICY_FORMAT,
                                             (const char *)0};
