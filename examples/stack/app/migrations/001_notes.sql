CREATE TABLE notes (
  id serial PRIMARY KEY,
  body text NOT NULL,
  processed boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now()
);
