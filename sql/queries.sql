-- Named statements, loaded by name by worker/queue/sql.py and run through worker/queue/connection.py.
-- Each block starts with "-- name: <name>"; parameters are psycopg's %(name)s. The in-memory double
-- (worker/queue/memory.py) answers the same names with the same rows.

-- name: schema_tables
SELECT to_regclass('apelier.migrations') IS NOT NULL AS versioned,
       to_regclass('apelier.schema_version') IS NOT NULL AS legacy;

-- name: migrations_version
SELECT max(version) AS version FROM apelier.migrations;

-- name: legacy_schema_version
-- What workers before versioned migrations recorded (one row; their versions 1 to 3).
SELECT version FROM apelier.schema_version;

-- name: migration_lock
-- Held until the migration's transaction ends: a second box migrating at the same time waits, then
-- finds nothing left to apply.
SELECT pg_advisory_xact_lock(hashtext('apelier-worker migrate'));

-- name: create_migrations_table
CREATE SCHEMA IF NOT EXISTS apelier;
CREATE TABLE IF NOT EXISTS apelier.migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- name: applied_migrations
SELECT version, name, checksum, applied_at FROM apelier.migrations ORDER BY version;

-- name: record_migration
INSERT INTO apelier.migrations (version, name, checksum) VALUES (%(version)s, %(name)s, %(checksum)s)
RETURNING version;

-- name: listen
LISTEN apelier_jobs;

-- name: claim_job
SELECT * FROM apelier.claim_job(%(worker)s, %(job_types)s);

-- name: claim_chunk
-- A chunk of a split job (migration 8): the job's row as JSON, the chunk's number, how many the job
-- has, the chunk's attempts and its photos.
SELECT * FROM apelier.claim_chunk(%(worker)s, %(job_types)s);

-- name: split_job
SELECT apelier.split_job(%(job)s, %(worker)s, %(photos)s::uuid[], %(chunk_size)s, %(processed)s,
                         %(total)s) AS state;

-- name: end_chunk
SELECT apelier.end_chunk(%(job)s, %(worker)s) AS state;

-- name: job_chunks
SELECT chunk, status, attempts, locked_by, cardinality(photo_ids) AS photos, edited
FROM apelier.job_chunks WHERE job_id = %(job)s ORDER BY chunk;

-- name: chunk_workers
-- Photos of a split job's chunks that this job edited, by the worker that edited each (ai_edits.worker).
SELECT p.ai_edits->>'worker' AS worker, count(*) AS photos
FROM public.photos p
WHERE p.id IN (SELECT unnest(c.photo_ids) FROM apelier.job_chunks c WHERE c.job_id = %(job)s)
  AND p.status IN ('edited', 'approved', 'delivered') AND p.ai_edits->>'job_id' = %(job)s::text
GROUP BY 1 ORDER BY 1;

-- name: heartbeat
SELECT apelier.heartbeat(%(job)s, %(worker)s) AS state;

-- name: start_style_training
SELECT apelier.start_style_training(%(job)s, %(worker)s) AS state;

-- name: update_progress
SELECT apelier.update_progress(%(job)s, %(worker)s, %(phase)s, %(processed)s, %(total)s,
                               %(progress)s, %(phase_timings)s) AS state;

-- name: finish_photo
SELECT apelier.finish_photo(%(job)s, %(worker)s, %(photo)s, %(fields)s, %(bill)s) AS state;

-- name: fail_photo
SELECT apelier.fail_photo(%(job)s, %(worker)s, %(photo)s, %(error)s) AS state;

-- name: merge_photo_suggestions
SELECT apelier.merge_photo_suggestions(%(job)s, %(worker)s, %(suggestions)s) AS updated;

-- name: complete_job
SELECT apelier.complete_job(%(job)s, %(worker)s, %(processed)s, %(total)s, %(progress)s,
                            %(phase_timings)s, %(summary)s) AS ok;

-- name: fail_job
SELECT apelier.fail_job(%(job)s, %(worker)s, %(error)s, %(retry_in_s)s) AS state;

-- name: release_job
SELECT apelier.release_job(%(job)s, %(worker)s) AS ok;

-- name: ack_cancel
SELECT apelier.ack_cancel(%(job)s, %(worker)s, %(processed)s, %(progress)s) AS ok;

-- name: cancel_job
SELECT apelier.cancel_job(%(job)s) AS status;

-- name: requeue_stale
SELECT * FROM apelier.requeue_stale(%(lease_s)s);

-- name: end_attempt
SELECT apelier.end_attempt(%(job)s, %(worker)s, %(error)s, %(retry_in_s)s, %(outside)s) AS state;

-- name: job_setup_done
SELECT apelier.job_setup_done(%(job)s, %(worker)s) AS state;

-- name: photo_started
SELECT apelier.photo_started(%(job)s, %(worker)s, %(photo)s) AS state;

-- name: photo_processed
SELECT apelier.photo_processed(%(job)s, %(worker)s, %(photo)s, %(keys)s) AS state;

-- name: photos_in_flight
-- The job's photos that were being processed when one of its runs died, and those failed alone for it.
SELECT photo_id, deaths, isolated_at IS NOT NULL AS isolated
FROM apelier.photos_in_flight WHERE job_id = %(job)s AND deaths > 0;

-- name: unrecorded_outputs
SELECT * FROM apelier.unrecorded_outputs(%(lease_s)s, %(limit)s);

-- name: own_unrecorded_outputs
SELECT * FROM apelier.own_unrecorded_outputs(%(job)s, %(worker)s);

-- name: forget_output
SELECT apelier.forget_output(%(job)s, %(key)s);

-- name: worker_seen
SELECT apelier.worker_seen(%(worker)s, %(hostname)s, %(pid)s, %(version)s, %(device)s, %(state)s,
                           %(job)s, %(info)s);

-- name: get_job
SELECT * FROM public.processing_jobs WHERE id = %(job)s;

-- name: get_gallery
SELECT id, photographer_id, title FROM public.galleries WHERE id = %(gallery)s;

-- name: gallery_photos
-- Every photo of the gallery that is not culled, in the gallery's order.
SELECT id, photographer_id, gallery_id, filename, original_key, status, edited_key, web_key, thumb_key,
       ai_edits->>'job_id' AS edited_by_job, file_size
FROM public.photos
WHERE gallery_id = %(gallery)s AND NOT is_culled
ORDER BY sort_order, created_at, id;

-- name: gallery_output_keys
-- Every storage key a photo row of the gallery points at, culled photos included: what a cleanup of a
-- job's unrecorded outputs must leave alone.
SELECT DISTINCT k.key
FROM public.photos AS p,
     LATERAL unnest(ARRAY[p.edited_key, p.web_key, p.thumb_key, p.watermarked_key]) AS k(key)
WHERE p.gallery_id = %(gallery)s AND k.key IS NOT NULL;

-- name: gallery_filenames
SELECT id, filename FROM public.photos WHERE gallery_id = %(gallery)s ORDER BY created_at, id;

-- name: get_style_profile
SELECT * FROM public.style_profiles WHERE id = %(profile)s;

-- name: update_style_training
-- The training fields the app reads; status mirrors training_status for the app's older code.
UPDATE public.style_profiles
SET training_status = %(training_status)s,
    status = %(training_status)s,
    training_method = coalesce(%(training_method)s, training_method),
    model_key = coalesce(%(model_key)s, model_key),
    model_weights_key = coalesce(%(model_key)s, model_weights_key),
    model_filename = coalesce(%(model_filename)s, model_filename),
    training_time_s = coalesce(%(training_time_s)s, training_time_s),
    pairs_used = coalesce(%(pairs_used)s, pairs_used),
    training_error = %(training_error)s,
    training_started_at = CASE WHEN %(training_status)s = 'training' THEN now() ELSE training_started_at END,
    -- The style cache's version: moves when a new model is stored or a training ends in error, not
    -- when a canceled retrain goes back to 'ready' with the model it had.
    training_completed_at = CASE WHEN %(training_status)s = 'error' OR %(model_key)s IS NOT NULL THEN now()
                                 ELSE training_completed_at END,
    updated_at = now()
WHERE id = %(profile)s
RETURNING id;

-- name: insert_job
-- The row the app inserts (columns it sets); the queue columns take their defaults unless given.
INSERT INTO public.processing_jobs (gallery_id, photographer_id, style_profile_id, total_images,
                                    processed_images, status, current_phase, job_type, payload,
                                    priority, settings_override)
VALUES (%(gallery)s, %(photographer)s, %(style)s, %(total)s, 0, 'queued', 'queued', %(job_type)s,
        %(payload)s, %(priority)s, %(settings_override)s)
RETURNING id;

-- name: count_gallery_photos
SELECT count(*) AS n FROM public.photos WHERE gallery_id = %(gallery)s AND NOT is_culled;

-- name: queue_pending
-- Jobs a daemon in --drain mode still waits for: queued (also in backoff) or being processed.
SELECT count(*) FILTER (WHERE status = 'queued') AS queued,
       count(*) FILTER (WHERE status = 'processing') AS processing
FROM public.processing_jobs
WHERE status IN ('queued', 'processing') AND job_type = ANY (%(job_types)s);

-- name: queue_depth
SELECT status, job_type, count(*) AS jobs, min(created_at) AS oldest
FROM public.processing_jobs GROUP BY status, job_type ORDER BY status, job_type;

-- name: jobs_in_flight
SELECT id, job_type, gallery_id, locked_by, current_phase, processed_images, total_images, attempts,
       started_at, heartbeat_at, now() - started_at AS age
FROM public.processing_jobs WHERE status = 'processing' ORDER BY started_at;

-- name: chunks_in_flight
-- The chunks of split galleries still at work, for `status`: who holds each and when it last beat.
SELECT c.job_id, c.chunk, c.status, c.locked_by, c.attempts, cardinality(c.photo_ids) AS photos, c.edited,
       c.heartbeat_at
FROM apelier.job_chunks c
JOIN public.processing_jobs p ON p.id = c.job_id
WHERE p.status = 'processing' AND p.locked_by = 'apelier:chunks'
ORDER BY c.job_id, c.chunk;

-- name: recent_failures
SELECT id, job_type, gallery_id, attempts, completed_at, error_log
FROM public.processing_jobs WHERE status = 'failed' ORDER BY completed_at DESC NULLS LAST LIMIT %(limit)s;

-- name: workers_recent
SELECT id, hostname, pid, version, device, state, job_id, started_at, last_seen_at,
       now() - last_seen_at AS silent_for
FROM apelier.workers WHERE last_seen_at > now() - make_interval(secs => %(within_s)s)
ORDER BY last_seen_at DESC;

-- name: upsert_photographer
-- The app creates photographers at sign-up; the demo and tests create theirs here.
INSERT INTO public.photographers (id, name, email) VALUES (%(id)s, %(name)s, %(email)s)
ON CONFLICT (id) DO UPDATE SET name = excluded.name
RETURNING id;

-- name: insert_gallery
INSERT INTO public.galleries (photographer_id, title) VALUES (%(photographer)s, %(title)s) RETURNING id;

-- name: insert_photo
-- The row the app inserts after an upload.
INSERT INTO public.photos (gallery_id, photographer_id, original_key, filename, file_size, mime_type,
                           sort_order, status)
VALUES (%(gallery)s, %(photographer)s, %(key)s, %(filename)s, %(size)s, %(mime)s, %(sort_order)s, 'uploaded')
RETURNING id;

-- name: insert_style_profile
INSERT INTO public.style_profiles (photographer_id, name, settings) VALUES (%(photographer)s, %(name)s, %(settings)s)
RETURNING id;

-- name: gallery_photo_rows
SELECT id, filename, original_key, edited_key, web_key, thumb_key, status, width, height, quality_score,
       scene_type, needs_review, ai_edits->'error'->>'reason' AS error
FROM public.photos WHERE gallery_id = %(gallery)s ORDER BY sort_order, created_at, id;

-- name: photographer_billing
SELECT images_edited_count FROM public.photographers WHERE id = %(photographer)s;

-- name: gallery_analysis
-- What gallery-level culling needs of every analysed photo: the analysis report and the EXIF summary.
SELECT id, ai_edits->'analysis' AS analysis, exif_data
FROM public.photos
WHERE gallery_id = %(gallery)s AND NOT is_culled AND ai_edits ? 'analysis';

-- The HTTP API (worker/api/): who is asking, what is theirs, and the rows it queues.

-- name: photographer_for_auth_user
-- The photographer a signed-in Supabase user is (the app's RLS compares auth_user_id = auth.uid()).
SELECT id FROM public.photographers WHERE auth_user_id = %(user)s ORDER BY created_at, id LIMIT 1;

-- name: get_photographer
SELECT id FROM public.photographers WHERE id = %(photographer)s;

-- name: get_photo
SELECT id, gallery_id, photographer_id, is_culled FROM public.photos WHERE id = %(photo)s;

-- name: enqueue_gallery
-- Queue the gallery, or the gallery job of it still queued with the same style, settings and payload
-- (migration 9: the app's rpc public.apelier_enqueue_gallery takes the same path).
SELECT (e.job).id AS id, e.reused FROM apelier.enqueue_gallery(%(gallery)s, %(style)s, %(settings_override)s,
                                                               %(payload)s) AS e;

-- name: lock_style_enqueue
-- Held until the transaction ends: two retrains of one profile at once queue one job.
SELECT pg_advisory_xact_lock(hashtext('apelier enqueue style ' || %(profile)s::text));

-- name: active_training_job
-- The profile's train_style job that is queued or running, if any.
SELECT id, status FROM public.processing_jobs
WHERE style_profile_id = %(profile)s AND job_type = 'train_style' AND status IN ('queued', 'processing')
ORDER BY created_at DESC LIMIT 1;

-- name: last_training_payload
-- What the profile was last trained from (a retrain uses it again).
SELECT payload FROM public.processing_jobs
WHERE style_profile_id = %(profile)s AND job_type = 'train_style'
ORDER BY created_at DESC LIMIT 1;

-- name: insert_training_style_profile
-- A new profile, 'pending' until a worker starts its train_style job (status is the app's older column).
INSERT INTO public.style_profiles (photographer_id, name, description, reference_image_keys, settings, status,
                                   training_status, training_method)
VALUES (%(photographer)s, %(name)s, %(description)s, %(reference_keys)s, %(settings)s, 'pending', 'pending',
        %(method)s)
RETURNING id;
