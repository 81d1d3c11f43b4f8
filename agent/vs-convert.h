/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* qemu-img convert of every disk into its finished image, one after the other, each a
 * cancellable subprocess: live's flatten and cold's extract. */
#pragma once

#include "vs-job-method.h"

G_BEGIN_DECLS

struct _VsConvertInput {
    /* Share of Progress already done when the conversion starts. */
    double progress_base;
    /* What qemu-img reads for @disk, and its format; FALSE: the copy already wrote the
     * finished image (the disk's delta), which is only renamed. */
    gboolean (*input)(VsJob *job, VsJobDisk *disk, const char **path, const char **format);
};
typedef struct _VsConvertInput VsConvertInput;

/* Converts every disk; ends through job->step_done. Main loop. */
void vs_convert_start(VsJob *job, const VsConvertInput *input);

G_END_DECLS
