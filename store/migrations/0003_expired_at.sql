-- When a purchase's session expired: the earlier of the session's
-- expires_at and when the reconciler first saw it expired (a session can be
-- expired early, through the API or the Dashboard). The recovery email is
-- anchored here, not at the original expires_at.
ALTER TABLE purchases ADD COLUMN expired_at timestamptz;
