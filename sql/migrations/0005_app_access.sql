-- Migration 5: the app's users and the worker's own role, each with exactly the rights they need.
--
--   A. What a photographer may do to the queue, binding whatever policies the app has.
--   B. apelier_worker: the least-privileged role a worker can connect as.
--   C. The functions the app calls with supabase.rpc(...): queue a gallery, a restyle, a style
--      training; cancel a job.

-- == A. What the app's users may do to the queue ===================================================
--
-- The app's database already has permissive policies on processing_jobs that check only
-- photographer_id (supabase/migrations/..._fix_rls_policies.sql: processing_jobs_insert/_update/
-- _delete). PostgreSQL ORs permissive policies, so migration 4's stricter permissive ones added
-- nothing there: a photographer could queue a job on another photographer's gallery, give it
-- priority -1000000 or 1000 attempts, or set their own job to 'processing' with a lease far in the
-- future that no worker ever requeues. Three things close that for the API's roles (anon,
-- authenticated), and leave the service role (BYPASSRLS), the table owner and the worker's role alone:
--   A1. the status CHECK, which this migration now owns: every status the app writes;
--   A2. a trigger that puts the worker's columns to their defaults on an insert and lets an update
--       do nothing but cancel the job (or mark it delivered);
--   A3. a RESTRICTIVE policy (ANDed with every permissive one): the row's photographer is the
--       caller, and its gallery and style profile are that photographer's.

-- A1. Statuses. The app's initial schema allows queued, processing, completed, failed, canceled;
-- the app also writes 'delivered' (its mark_delivered action, with the service role), which the
-- app's own CHECK refused. Every CHECK that constrains status alone is replaced by this one.
-- NOT VALID: enforced on every new or changed row without scanning (or failing on) historic rows.
DO $do$
DECLARE
  c record;
BEGIN
  FOR c IN
    SELECT con.conname
    FROM pg_constraint con
    JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attname = 'status'
    WHERE con.conrelid = 'public.processing_jobs'::regclass AND con.contype = 'c'
      AND con.conkey = ARRAY[a.attnum]
  LOOP
    EXECUTE format('ALTER TABLE public.processing_jobs DROP CONSTRAINT %I', c.conname);
  END LOOP;
  ALTER TABLE public.processing_jobs ADD CONSTRAINT processing_jobs_status_check
    CHECK (status IN ('queued', 'processing', 'completed', 'failed', 'canceled', 'delivered')) NOT VALID;
END
$do$;

-- A2. The guard. On an insert by anon/authenticated: the job must be 'queued', and every column the
-- worker owns (order, attempts, lease, progress, timestamps) takes its default, so a job waits its
-- turn like any other. On an update: only status, error_log, completed_at and current_phase may
-- change, and status only from queued/processing to canceled or failed (the app cancels with
-- status='failed', error_log='Cancelled by user') or from completed to delivered.
CREATE OR REPLACE FUNCTION apelier.guard_app_job_write() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
  free CONSTANT text[] := ARRAY['status', 'error_log', 'completed_at', 'current_phase'];
  changed text;
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.status IS DISTINCT FROM 'queued' THEN
      RAISE EXCEPTION 'a photographer can only queue a job (status queued), not create one that is %',
        coalesce(NEW.status, 'null')
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    NEW.priority := 100;
    NEW.max_attempts := 3;
    NEW.attempts := 0;
    NEW.run_after := now();
    NEW.created_at := now();
    NEW.locked_by := NULL;
    NEW.heartbeat_at := NULL;
    NEW.started_at := NULL;
    NEW.completed_at := NULL;
    NEW.processed_images := 0;
    NEW.current_phase := 'queued';
    NEW.error_log := NULL;
    NEW.progress := '{}'::jsonb;
    NEW.phase_timings := '{}'::jsonb;
    RETURN NEW;
  END IF;

  SELECT string_agg(n.key, ', ' ORDER BY n.key) INTO changed
  FROM jsonb_each(to_jsonb(NEW) - free) AS n
  WHERE n.value IS DISTINCT FROM (to_jsonb(OLD) - free) -> n.key;
  IF changed IS NOT NULL THEN
    RAISE EXCEPTION 'a photographer may only cancel a job, not change its %', changed
      USING ERRCODE = 'insufficient_privilege',
            HINT = 'cancel with status canceled (or public.apelier_cancel_job); queue new work as a new job';
  END IF;
  IF NEW.status IS DISTINCT FROM OLD.status
     AND NOT (OLD.status IN ('queued', 'processing') AND NEW.status IN ('canceled', 'failed'))
     AND NOT (OLD.status = 'completed' AND NEW.status = 'delivered') THEN
    RAISE EXCEPTION 'a photographer cannot move a job from % to %', OLD.status, NEW.status
      USING ERRCODE = 'insufficient_privilege',
            HINT = 'a queued or processing job can be canceled; queue new work as a new job';
  END IF;
  RETURN NEW;
END;
$fn$;
REVOKE ALL ON FUNCTION apelier.guard_app_job_write() FROM PUBLIC;

-- Named so that it runs before apelier_reset_requeued_job (BEFORE triggers fire by name).
CREATE OR REPLACE TRIGGER apelier_app_guard
    BEFORE INSERT OR UPDATE ON public.processing_jobs
    FOR EACH ROW WHEN (current_user IN ('anon', 'authenticated'))
    EXECUTE FUNCTION apelier.guard_app_job_write();

-- A3. The restrictive policy, for the API roles that exist, on a database with Supabase Auth.
DO $do$
DECLARE
  roles text;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE n.nspname = 'auth' AND p.proname = 'uid') THEN
    RETURN;
  END IF;
  SELECT string_agg(quote_ident(rolname), ', ' ORDER BY rolname) INTO roles
  FROM pg_roles WHERE rolname IN ('anon', 'authenticated');
  IF roles IS NULL THEN
    RETURN;
  END IF;
  ALTER TABLE public.processing_jobs ENABLE ROW LEVEL SECURITY;
  DROP POLICY IF EXISTS apelier_owner_only ON public.processing_jobs;
  EXECUTE format($policy$
    CREATE POLICY apelier_owner_only ON public.processing_jobs AS RESTRICTIVE FOR ALL TO %s
      USING (photographer_id IN (SELECT p.id FROM public.photographers p WHERE p.auth_user_id = auth.uid()))
      WITH CHECK (
        photographer_id IN (SELECT p.id FROM public.photographers p WHERE p.auth_user_id = auth.uid())
        AND (gallery_id IS NULL OR EXISTS (
              SELECT 1 FROM public.galleries g
              WHERE g.id = processing_jobs.gallery_id AND g.photographer_id = processing_jobs.photographer_id))
        AND (style_profile_id IS NULL OR EXISTS (
              SELECT 1 FROM public.style_profiles s
              WHERE s.id = processing_jobs.style_profile_id
                AND s.photographer_id = processing_jobs.photographer_id)))
  $policy$, roles);
END
$do$;

-- == B. apelier_worker: the worker's own role =====================================================
--
-- The worker may connect as the database owner (postgres) or as this role. The role can run the
-- worker's operations and nothing else: the queue functions, reading jobs, galleries, photos and
-- style profiles, writing only the columns those functions write (the job's lease and progress, a
-- photo's outputs, a profile's training fields, the billing counter through the app's
-- increment_images_edited), its own registry and billing ledger. It cannot insert or delete jobs,
-- read photographers' names or emails, or run migrations. It is created NOLOGIN; the operator
-- gives it a password (docs/deploy.md, step 5). A later migration that makes the worker touch
-- something new grants that to apelier_worker itself.
DO $do$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'apelier_worker') THEN
    BEGIN
      CREATE ROLE apelier_worker NOLOGIN;
    EXCEPTION
      WHEN duplicate_object THEN
        NULL;  -- another database of the same server migrated at the same moment
      WHEN insufficient_privilege THEN
        RAISE EXCEPTION 'migration 5 creates the role apelier_worker, and % may not create roles', current_user
          USING HINT = 'run apelier-worker migrate as the database owner (Supabase: postgres), '
                       'or have a superuser run: CREATE ROLE apelier_worker NOLOGIN';
    END;
  END IF;
END
$do$;

-- The worker's own schema: the version check, its registry, the billing ledger, the operations.
GRANT USAGE ON SCHEMA apelier TO apelier_worker;
GRANT SELECT ON apelier.migrations, apelier.schema_version TO apelier_worker;
GRANT SELECT, INSERT, UPDATE ON apelier.workers TO apelier_worker;
-- ON CONFLICT (photo_id) reads the conflict column: SELECT on it.
GRANT SELECT (photo_id), INSERT ON apelier.billed_photos TO apelier_worker;
GRANT EXECUTE ON FUNCTION
    apelier.claim_job(text, text[]),
    apelier.job_state(uuid, text),
    apelier.heartbeat(uuid, text),
    apelier.start_style_training(uuid, text),
    apelier.update_progress(uuid, text, text, integer, integer, jsonb, jsonb),
    apelier.finish_photo(uuid, text, uuid, jsonb, boolean),
    apelier.fail_photo(uuid, text, uuid, jsonb),
    apelier.merge_photo_suggestions(uuid, text, jsonb),
    apelier.complete_job(uuid, text, integer, integer, jsonb, jsonb, text),
    apelier.fail_job(uuid, text, text, double precision),
    apelier.release_job(uuid, text),
    apelier.ack_cancel(uuid, text, integer, jsonb),
    apelier.cancel_job(uuid),
    apelier.requeue_stale(double precision),
    apelier.worker_seen(text, text, integer, text, text, text, uuid, jsonb)
  TO apelier_worker;

-- The app's tables: read what a job needs, write only what the operations write.
GRANT USAGE ON SCHEMA public TO apelier_worker;
GRANT SELECT ON public.processing_jobs, public.photos, public.style_profiles TO apelier_worker;
GRANT SELECT (id, photographer_id, title) ON public.galleries TO apelier_worker;
GRANT SELECT (id, images_edited_count, billing_period_start, billing_period_end)
    ON public.photographers TO apelier_worker;
GRANT UPDATE (status, attempts, run_after, locked_by, heartbeat_at, started_at, completed_at,
              current_phase, processed_images, total_images, progress, phase_timings, error_log)
    ON public.processing_jobs TO apelier_worker;
GRANT UPDATE (edited_key, web_key, thumb_key, watermarked_key, width, height, exif_data, quality_score,
              face_data, scene_type, ai_edits, edit_confidence, needs_review, status, updated_at)
    ON public.photos TO apelier_worker;
GRANT UPDATE (training_status, status, training_method, model_key, model_weights_key, model_filename,
              training_time_s, pairs_used, training_error, training_started_at, training_completed_at,
              updated_at)
    ON public.style_profiles TO apelier_worker;
GRANT UPDATE (images_edited_count, billing_period_start, billing_period_end)
    ON public.photographers TO apelier_worker;
GRANT EXECUTE ON FUNCTION public.increment_images_edited(uuid, integer) TO apelier_worker;

-- Row-level security: where the app has it on (Supabase), the worker sees every photographer's
-- rows. The grants above decide which commands and columns; these policies only open the rows.
DO $do$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['processing_jobs', 'photos', 'galleries', 'style_profiles', 'photographers'] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE schemaname = 'public' AND tablename = t
                   AND policyname = 'apelier_worker_all_rows') THEN
      EXECUTE format('CREATE POLICY apelier_worker_all_rows ON public.%I FOR ALL TO apelier_worker '
                     'USING (true) WITH CHECK (true)', t);
    END IF;
  END LOOP;
END
$do$;

-- == C. The functions the app calls with supabase.rpc =============================================
--
-- Called under the signed-in photographer's JWT; each returns the job's row.
-- SECURITY INVOKER: they run as the caller (authenticated), so the row-level security of the
-- app's tables and part A's restrictive policy and guard decide what the caller may touch;
-- a function checks only what makes its error clearer. They live in schema public because that
-- is the schema Supabase's API exposes; apelier stays unexposed. Supabase Auth's auth.uid() is
-- looked up when they run (a database without it can create them, not call them).
-- Errors: SQLSTATE PT404 (PostgREST answers 404) for a row the caller cannot see, 22023 (400)
-- for a bad argument, 42501 (401/403) without a signed-in user.

CREATE OR REPLACE FUNCTION public.apelier_enqueue_gallery(
  gallery_id uuid, style_profile_id uuid DEFAULT NULL, settings_override jsonb DEFAULT NULL)
RETURNS public.processing_jobs
LANGUAGE plpgsql SECURITY INVOKER SET search_path = '' AS $fn$
DECLARE
  v_photographer uuid;
  v_total integer;
  job public.processing_jobs;
BEGIN
  IF auth.uid() IS NULL THEN
    RAISE EXCEPTION 'sign in to queue or cancel jobs' USING ERRCODE = 'insufficient_privilege';
  END IF;
  SELECT g.photographer_id INTO v_photographer
  FROM public.galleries g WHERE g.id = apelier_enqueue_gallery.gallery_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'gallery % not found', apelier_enqueue_gallery.gallery_id USING ERRCODE = 'PT404';
  END IF;
  -- The same gallery already waiting with the same style and settings: that job will see every photo.
  SELECT * INTO job FROM public.processing_jobs j
  WHERE j.gallery_id = apelier_enqueue_gallery.gallery_id AND j.job_type = 'gallery' AND j.status = 'queued'
    AND j.style_profile_id IS NOT DISTINCT FROM apelier_enqueue_gallery.style_profile_id
    AND j.settings_override IS NOT DISTINCT FROM apelier_enqueue_gallery.settings_override
  ORDER BY j.created_at LIMIT 1;
  IF FOUND THEN
    RETURN job;
  END IF;
  SELECT count(*) INTO v_total FROM public.photos p
  WHERE p.gallery_id = apelier_enqueue_gallery.gallery_id AND NOT p.is_culled;
  INSERT INTO public.processing_jobs (gallery_id, photographer_id, style_profile_id, total_images,
                                      status, job_type, settings_override)
  VALUES (apelier_enqueue_gallery.gallery_id, v_photographer, apelier_enqueue_gallery.style_profile_id,
          v_total, 'queued', 'gallery', apelier_enqueue_gallery.settings_override)
  RETURNING * INTO job;
  RETURN job;
END;
$fn$;

CREATE OR REPLACE FUNCTION public.apelier_enqueue_restyle(
  gallery_id uuid, photo_ids uuid[], style_profile_id uuid DEFAULT NULL, settings_override jsonb DEFAULT NULL)
RETURNS public.processing_jobs
LANGUAGE plpgsql SECURITY INVOKER SET search_path = '' AS $fn$
DECLARE
  v_photographer uuid;
  v_ids uuid[];
  v_found uuid[];
  job public.processing_jobs;
BEGIN
  IF auth.uid() IS NULL THEN
    RAISE EXCEPTION 'sign in to queue or cancel jobs' USING ERRCODE = 'insufficient_privilege';
  END IF;
  SELECT array_agg(DISTINCT i ORDER BY i) INTO v_ids
  FROM unnest(apelier_enqueue_restyle.photo_ids) AS i WHERE i IS NOT NULL;
  IF v_ids IS NULL THEN
    RAISE EXCEPTION 'photo_ids is empty: name the photos to restyle' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT g.photographer_id INTO v_photographer
  FROM public.galleries g WHERE g.id = apelier_enqueue_restyle.gallery_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'gallery % not found', apelier_enqueue_restyle.gallery_id USING ERRCODE = 'PT404';
  END IF;
  SELECT coalesce(array_agg(p.id), '{}') INTO v_found FROM public.photos p
  WHERE p.id = ANY (v_ids) AND p.gallery_id = apelier_enqueue_restyle.gallery_id;
  IF cardinality(v_found) < cardinality(v_ids) THEN
    RAISE EXCEPTION 'photos not found in gallery %: %', apelier_enqueue_restyle.gallery_id,
      (SELECT string_agg(i::text, ', ') FROM unnest(v_ids) AS i WHERE i <> ALL (v_found))
      USING ERRCODE = 'PT404';
  END IF;
  INSERT INTO public.processing_jobs (gallery_id, photographer_id, style_profile_id, total_images,
                                      status, job_type, payload, settings_override)
  VALUES (apelier_enqueue_restyle.gallery_id, v_photographer, apelier_enqueue_restyle.style_profile_id,
          cardinality(v_ids), 'queued', 'restyle', jsonb_build_object('photo_ids', to_jsonb(v_ids::text[])),
          apelier_enqueue_restyle.settings_override)
  RETURNING * INTO job;
  RETURN job;
END;
$fn$;

-- pairs: [{"original_key", "edited_key"}, ...], 5 to 200 (worker/jobs/style.py), for the 3D LUT;
-- without pairs, the histogram method from reference_keys (default: the profile's).
CREATE OR REPLACE FUNCTION public.apelier_enqueue_style_training(
  style_profile_id uuid, pairs jsonb DEFAULT NULL, reference_keys text[] DEFAULT NULL, epochs integer DEFAULT NULL)
RETURNS public.processing_jobs
LANGUAGE plpgsql SECURITY INVOKER SET search_path = '' AS $fn$
DECLARE
  v_photographer uuid;
  v_profile_refs text[];
  v_keys text[];
  v_payload jsonb;
  job public.processing_jobs;
BEGIN
  IF auth.uid() IS NULL THEN
    RAISE EXCEPTION 'sign in to queue or cancel jobs' USING ERRCODE = 'insufficient_privilege';
  END IF;
  SELECT s.photographer_id, s.reference_image_keys INTO v_photographer, v_profile_refs
  FROM public.style_profiles s WHERE s.id = apelier_enqueue_style_training.style_profile_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'style profile % not found', apelier_enqueue_style_training.style_profile_id
      USING ERRCODE = 'PT404';
  END IF;

  IF pairs IS NOT NULL THEN
    IF reference_keys IS NOT NULL THEN
      RAISE EXCEPTION 'give pairs (3D LUT) or reference_keys (histogram), not both'
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF jsonb_typeof(pairs) <> 'array' OR jsonb_array_length(pairs) NOT BETWEEN 5 AND 200 THEN
      RAISE EXCEPTION 'pairs must be a list of 5 to 200 {original_key, edited_key}'
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(pairs) AS e
               WHERE jsonb_typeof(e) <> 'object'
                  OR jsonb_typeof(e -> 'original_key') IS DISTINCT FROM 'string'
                  OR jsonb_typeof(e -> 'edited_key') IS DISTINCT FROM 'string') THEN
      RAISE EXCEPTION 'every pair needs original_key and edited_key (strings)'
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT array_agg(k) INTO v_keys
    FROM jsonb_array_elements(pairs) AS e, LATERAL (VALUES (e ->> 'original_key'), (e ->> 'edited_key')) AS v (k);
    IF epochs IS NOT NULL AND epochs NOT BETWEEN 1 AND 1000 THEN
      RAISE EXCEPTION 'epochs must be 1 to 1000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_payload := jsonb_build_object(
      'pairs', (SELECT jsonb_agg(jsonb_build_object('original_key', e -> 'original_key',
                                                    'edited_key', e -> 'edited_key'))
                FROM jsonb_array_elements(pairs) AS e));
    IF epochs IS NOT NULL THEN
      v_payload := v_payload || jsonb_build_object('epochs', epochs);
    END IF;
  ELSE
    IF epochs IS NOT NULL THEN
      RAISE EXCEPTION 'epochs applies to pairs (3D LUT) only' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_keys := coalesce(reference_keys, v_profile_refs);
    IF coalesce(cardinality(v_keys), 0) = 0 THEN
      RAISE EXCEPTION 'give pairs, or reference_keys (the profile has no reference_image_keys)'
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_payload := jsonb_build_object('training_method', 'histogram');
    IF reference_keys IS NOT NULL THEN
      v_payload := v_payload || jsonb_build_object('reference_keys', to_jsonb(reference_keys));
    END IF;
  END IF;
  -- Every key in the photographer's own folder, as the worker requires (it checks again).
  IF EXISTS (SELECT 1 FROM unnest(v_keys) AS k
             WHERE split_part(k, '/', 1) <> v_photographer::text OR position('/' IN k) = 0
                OR string_to_array(k, '/') && ARRAY['', '.', '..']) THEN
    RAISE EXCEPTION 'every key must lie in the photographer''s folder (%/...)', v_photographer
      USING ERRCODE = 'invalid_parameter_value';
  END IF;

  INSERT INTO public.processing_jobs (gallery_id, photographer_id, style_profile_id, total_images,
                                      status, job_type, payload)
  VALUES (NULL, v_photographer, apelier_enqueue_style_training.style_profile_id, 0, 'queued', 'train_style',
          v_payload)
  RETURNING * INTO job;
  RETURN job;
END;
$fn$;

-- A queued job is canceled at once; a running one too, and its worker lets go within a photo.
-- A job that has already ended is returned as it is.
CREATE OR REPLACE FUNCTION public.apelier_cancel_job(job_id uuid)
RETURNS public.processing_jobs
LANGUAGE plpgsql SECURITY INVOKER SET search_path = '' AS $fn$
DECLARE
  job public.processing_jobs;
BEGIN
  IF auth.uid() IS NULL THEN
    RAISE EXCEPTION 'sign in to queue or cancel jobs' USING ERRCODE = 'insufficient_privilege';
  END IF;
  UPDATE public.processing_jobs AS j
  SET status = 'canceled',
      current_phase = 'canceled',
      completed_at = CASE WHEN j.locked_by IS NULL THEN now() ELSE j.completed_at END
  WHERE j.id = apelier_cancel_job.job_id AND j.status IN ('queued', 'processing')
  RETURNING j.* INTO job;
  IF FOUND THEN
    RETURN job;
  END IF;
  SELECT * INTO job FROM public.processing_jobs j WHERE j.id = apelier_cancel_job.job_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'job % not found', apelier_cancel_job.job_id USING ERRCODE = 'PT404';
  END IF;
  RETURN job;
END;
$fn$;

-- For signed-in users (and the service role), not for anon.
REVOKE ALL ON FUNCTION
    public.apelier_enqueue_gallery(uuid, uuid, jsonb),
    public.apelier_enqueue_restyle(uuid, uuid[], uuid, jsonb),
    public.apelier_enqueue_style_training(uuid, jsonb, text[], integer),
    public.apelier_cancel_job(uuid)
  FROM PUBLIC;
DO $do$
DECLARE
  r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('%s ALL ON FUNCTION public.apelier_enqueue_gallery(uuid, uuid, jsonb), '
                     'public.apelier_enqueue_restyle(uuid, uuid[], uuid, jsonb), '
                     'public.apelier_enqueue_style_training(uuid, jsonb, text[], integer), '
                     'public.apelier_cancel_job(uuid) %s %I',
                     CASE r WHEN 'anon' THEN 'REVOKE' ELSE 'GRANT' END,
                     CASE r WHEN 'anon' THEN 'FROM' ELSE 'TO' END, r);
    END IF;
  END LOOP;
END
$do$;
