/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* qemu-img convert, shared by live (the deltas) and cold (the disks' own chains): one
 * disk after the other into <image>.part, renamed when complete. */
#include "vs-convert.h"
#include "vs-job-private.h"
#include "vs-error.h"
#include "vs-qemu-img.h"
#include "vs-util.h"

#include <errno.h>
#include <glib/gstdio.h>

static void convert_next(VsJob *job);

static void
on_convert_progress(double fraction, gpointer data)
{
    VsJob *job = data;
    guint n = job->disks->len;
    VsJobDisk *d = vs_job_disk(job, job->flatten_index);
    double overall = (job->flatten_index + fraction) / n;
    double base = job->convert->progress_base;

    vs_job_set_progress(job, base + (1 - base) * overall, (guint64)(fraction * d->plan->capacity),
                        d->plan->capacity);
}

static void
convert_done(GObject *source, GAsyncResult *result, gpointer data)
{
    g_autoptr(VsJob) job = data;
    VsJobDisk *d = vs_job_disk(job, job->flatten_index);
    g_autofree char *out = NULL;
    GError *error = NULL;

    if (!(out = vs_qemu_img_run_finish(result, &error))) {
        job->step_done(job, error);
        return;
    }
    if (g_rename(d->part, d->image) < 0) {
        vs_set_errno_error(&error, errno, "cannot rename %s", d->part);
        job->step_done(job, error);
        return;
    }
    if (d->delta) /* live: the delta; cold reads the disk itself, which stays */
        g_unlink(d->delta);
    job->flatten_index++;
    convert_next(job);
}

/* An encrypted disk: read with its secret, written encrypted with the same one (the plan
 * refuses raw and compressed output for it). */
static void
convert_encrypted(VsJob *job, VsJobDisk *d, const char *path)
{
    g_autofree char *spec = vs_secret_image_spec(path, 0);
    g_autofree char *options = vs_secret_create_options(0);
    const char *args[] = {"convert", "-p", "-O", "qcow2", "-o", options, spec, d->part, NULL};
    VsSecret *secrets[] = {d->plan->secret, NULL};

    vs_qemu_img_run_async_full(args, secrets, vs_job_child_note, job, on_convert_progress, job,
                               job->cancellable, convert_done, g_object_ref(job));
}

static void
convert_next(VsJob *job)
{
    VsJobDisk *d;
    GError *error = NULL;
    const char *path = NULL, *format = NULL;

    if (job->cancel_requested) {
        job->step_done(job, g_error_new(VS_ERROR, VS_ERROR_CANCELLED, "cancelled"));
        return;
    }
    if (job->flatten_index >= job->disks->len) {
        job->t_flatten_end = vs_now_ms();
        vs_job_step_done_later(job);
        return;
    }
    d = vs_job_disk(job, job->flatten_index);

    if (!job->convert->input(job, d, &path, &format)) {
        if (g_rename(d->delta, d->image) < 0) {
            vs_set_errno_error(&error, errno, "cannot rename %s", d->delta);
            job->step_done(job, error);
            return;
        }
        job->flatten_index++;
        convert_next(job);
        return;
    }
    if (d->plan->secret) {
        convert_encrypted(job, d, path);
        return;
    }
    {
        const char *args[16];
        int n = 0;

        args[n++] = "convert";
        args[n++] = "-p";
        args[n++] = "-f";
        args[n++] = format;
        args[n++] = "-O";
        args[n++] = vs_format_name(job->opts.format);
        if (job->opts.compress)
            args[n++] = "-c";
        args[n++] = path;
        args[n++] = d->part;
        args[n] = NULL;
        vs_qemu_img_run_async_full(args, NULL, vs_job_child_note, job, on_convert_progress, job,
                                   job->cancellable, convert_done, g_object_ref(job));
    }
}

void
vs_convert_start(VsJob *job, const VsConvertInput *input)
{
    job->convert = input;
    job->flatten_index = 0;
    convert_next(job);
}
