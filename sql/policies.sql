-- Row-level security for the queue table, on a database with Supabase Auth (auth.uid() exists):
-- a photographer sees, enqueues and cancels only their own jobs. The worker connects with a role
-- that bypasses RLS (the database owner / service role). Policies are created only when missing,
-- so the app's own policies are never replaced.
DO $do$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE n.nspname = 'auth' AND p.proname = 'uid') THEN
    RETURN;
  END IF;
  ALTER TABLE public.processing_jobs ENABLE ROW LEVEL SECURITY;
  IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE schemaname = 'public' AND tablename = 'processing_jobs'
                 AND policyname = 'processing_jobs_owner_select') THEN
    CREATE POLICY processing_jobs_owner_select ON public.processing_jobs FOR SELECT
      USING (photographer_id IN (SELECT id FROM public.photographers WHERE auth_user_id = auth.uid()));
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE schemaname = 'public' AND tablename = 'processing_jobs'
                 AND policyname = 'processing_jobs_owner_insert') THEN
    CREATE POLICY processing_jobs_owner_insert ON public.processing_jobs FOR INSERT
      WITH CHECK (photographer_id IN (SELECT id FROM public.photographers WHERE auth_user_id = auth.uid())
                  AND (gallery_id IS NULL OR gallery_id IN (
                        SELECT g.id FROM public.galleries g
                        WHERE g.photographer_id = processing_jobs.photographer_id)));
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE schemaname = 'public' AND tablename = 'processing_jobs'
                 AND policyname = 'processing_jobs_owner_update') THEN
    CREATE POLICY processing_jobs_owner_update ON public.processing_jobs FOR UPDATE
      USING (photographer_id IN (SELECT id FROM public.photographers WHERE auth_user_id = auth.uid()));
  END IF;
END
$do$;
