-- Migration 4: what a Supabase project needs, applied only where Supabase's objects exist.
--
-- Supabase Realtime: the app subscribes to changes of these tables. Only on a database that has the
-- supabase_realtime publication (a Supabase project); plain PostgreSQL is left alone.
DO $do$
DECLARE
  t text;
BEGIN
  IF EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime' AND NOT puballtables) THEN
    FOREACH t IN ARRAY ARRAY['processing_jobs', 'photos', 'style_profiles'] LOOP
      IF NOT EXISTS (SELECT 1 FROM pg_publication_tables
                     WHERE pubname = 'supabase_realtime' AND schemaname = 'public' AND tablename = t) THEN
        EXECUTE format('ALTER PUBLICATION supabase_realtime ADD TABLE public.%I', t);
      END IF;
    END LOOP;
  END IF;
END
$do$;

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
