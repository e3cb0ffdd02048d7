-- Shared fixtures for the golden sessions that follow (files run in name order).
CREATE EXTENSION pg_ambient;
\set QUIET on
\i examples/iris.sql
\set QUIET off
SELECT count(*) AS iris_rows FROM iris;
-- Reports an error as SQLSTATE, message and hint instead of aborting, so a
-- session can assert the code of every failure and then go on. Its one
-- comparison is qualified, so it stays true under 50_security's hijacked `=`.
CREATE FUNCTION public.try(statement text)
RETURNS TABLE (sqlstate text, message text, hint text) LANGUAGE plpgsql AS $$
DECLARE
    code text; msg text; hnt text;
BEGIN
    EXECUTE statement;
    RETURN QUERY SELECT '00000'::text, 'ok'::text, NULL::text;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hnt = PG_EXCEPTION_HINT;
    RETURN QUERY SELECT code, msg, CASE WHEN hnt OPERATOR(pg_catalog.=) '' THEN NULL ELSE hnt END;
END $$;
-- A regression table with a known answer: y = 3 + 2a - b, plus noise.
CREATE TABLE lines AS
SELECT g AS id, (g % 17)::float8 AS a, ((g * 7) % 11)::float8 AS b,
       3 + 2 * (g % 17) - ((g * 7) % 11) + ((g * 13) % 5 - 2) * 0.01 AS y
  FROM generate_series(1, 200) AS g;
ALTER TABLE lines ADD PRIMARY KEY (id);
-- The live version of a project, for sessions that follow deployments.
CREATE FUNCTION public.live_version(project text) RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT version FROM ambient.models m WHERE m.project = $1 AND m.live
$$;
