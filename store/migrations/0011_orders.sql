-- Carts, stock and orders: several products in one payment, through a
-- multi-line Checkout Session (hosted) or a PaymentIntent paid with Stripe
-- Elements (embedded). All money is integer minor units beside the order's
-- currency.

-- One cart per user, replaced whole by PUT /api/cart. items is
-- [{"product": KEY, "quantity": N}]; a cart past expires_at (cart.ttl after
-- its last change) reads as empty and is pruned.
CREATE TABLE carts (
    user_id         text PRIMARY KEY,
    items           jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(items) = 'array' AND jsonb_array_length(items) <= 50),
    promotion_code  text,
    updated_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL
);
CREATE INDEX carts_expires_idx ON carts (expires_at);

-- Stock of the products that have any; a product without a row is not
-- limited. on_hand is what is left to sell, reserved what open checkouts
-- hold (available = on_hand - reserved). A checkout reserves with one
-- conditional UPDATE (... WHERE on_hand - reserved >= n), so two buyers,
-- on any replica, can never both take the last unit; the CHECKs hold the
-- floor whatever a statement does. oversold counts units paid for beyond
-- on_hand (an operator lowered the stock under open checkouts): the order
-- completes, on_hand stays at zero and the operator is alerted.
CREATE TABLE product_stock (
    product_key  text PRIMARY KEY,
    on_hand      integer NOT NULL CHECK (on_hand >= 0),
    reserved     integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    oversold     integer NOT NULL DEFAULT 0 CHECK (oversold >= 0),
    updated_at   timestamptz NOT NULL
);

-- orders: one row per checkout of a cart, recorded (with its stock
-- reserved) before the Stripe object exists, then keyed by it: the Checkout
-- Session of a hosted order, the PaymentIntent of an embedded one (and the
-- session's intent once paid, so its charge finds the order).
--   pending:    open, not paid (an embedded order stays pending through
--               declined attempts: the buyer may try another card)
--   processing: a payment was submitted and has not settled (bank debits)
--   paid, partially_refunded, refunded
--   canceled:   the PaymentIntent was canceled (by paymentd at expires_at)
--   expired:    the Checkout Session expired, or no Stripe object appeared
--   failed:     the session's asynchronous payment failed
CREATE TABLE orders (
    id                        uuid PRIMARY KEY,
    user_id                   text NOT NULL,
    email                     text,
    ui_mode                   text NOT NULL CHECK (ui_mode IN ('hosted', 'embedded')),
    status                    text NOT NULL CHECK (status IN ('pending', 'processing', 'paid', 'partially_refunded',
                                  'refunded', 'canceled', 'expired', 'failed')),
    currency                  text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    amount_subtotal           bigint NOT NULL CHECK (amount_subtotal >= 0),
    amount_discount           bigint NOT NULL DEFAULT 0 CHECK (amount_discount >= 0),
    amount_tax                bigint NOT NULL DEFAULT 0 CHECK (amount_tax >= 0),
    amount_total              bigint NOT NULL CHECK (amount_total >= 0),
    amount_refunded           bigint NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0),
    promotion_code            text,
    promotion_code_id         text,
    stripe_session_id         text UNIQUE,
    stripe_payment_intent_id  text UNIQUE,
    stripe_customer_id        text,
    stripe_charge_id          text,
    client_secret             text,
    checkout_url              text,
    tax_calculation_id        text,
    github_username           text,
    failed_attempts           integer NOT NULL DEFAULT 0 CHECK (failed_attempts >= 0),
    last_payment_error        text,
    stock_short               boolean NOT NULL DEFAULT false,
    expires_at                timestamptz NOT NULL,
    created_at                timestamptz NOT NULL,
    paid_at                   timestamptz,
    ended_at                  timestamptz,
    updated_at                timestamptz NOT NULL,
    checked_at                timestamptz,
    CHECK (ui_mode = 'hosted' OR stripe_session_id IS NULL),
    CHECK ((status IN ('paid', 'partially_refunded', 'refunded')) = (paid_at IS NOT NULL)),
    CHECK ((status IN ('canceled', 'expired', 'failed')) = (ended_at IS NOT NULL))
);
CREATE INDEX orders_user_idx ON orders (user_id, created_at DESC);
-- Open orders the reconciler re-checks (its sweep), oldest check first.
CREATE INDEX orders_open_idx ON orders (coalesce(checked_at, created_at)) WHERE status IN ('pending', 'processing');
CREATE INDEX orders_charge_idx ON orders (stripe_charge_id) WHERE stripe_charge_id IS NOT NULL;
CREATE INDEX orders_promotion_code_idx ON orders (promotion_code_id) WHERE promotion_code_id IS NOT NULL;

-- An order's lines as Stripe computed them: the unit amount of the price,
-- and each line's share of the discount and its tax.
CREATE TABLE order_lines (
    order_id         uuid NOT NULL REFERENCES orders (id),
    line             integer NOT NULL CHECK (line >= 0),
    product_key      text NOT NULL,
    quantity         integer NOT NULL CHECK (quantity > 0),
    unit_amount      bigint NOT NULL CHECK (unit_amount >= 0),
    amount_subtotal  bigint NOT NULL CHECK (amount_subtotal >= 0),
    amount_discount  bigint NOT NULL DEFAULT 0 CHECK (amount_discount >= 0),
    amount_tax       bigint NOT NULL DEFAULT 0 CHECK (amount_tax >= 0),
    amount_total     bigint NOT NULL CHECK (amount_total >= 0),
    PRIMARY KEY (order_id, line),
    UNIQUE (order_id, product_key)
);

-- What an order holds of each stocked product. A reservation moves once:
-- reserved → committed (paid) or reserved → released (expired, canceled,
-- failed); a late payment commits a released one again. Every move is a
-- conditional UPDATE on the state, so a repeated signal moves nothing.
-- short is how many of its units were paid for beyond on_hand.
CREATE TABLE stock_reservations (
    order_id     uuid NOT NULL REFERENCES orders (id),
    product_key  text NOT NULL REFERENCES product_stock (product_key),
    quantity     integer NOT NULL CHECK (quantity > 0),
    state        text NOT NULL CHECK (state IN ('reserved', 'committed', 'released')),
    short        integer NOT NULL DEFAULT 0 CHECK (short >= 0 AND short <= quantity),
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (order_id, product_key)
);
CREATE INDEX stock_reservations_held_idx ON stock_reservations (product_key) WHERE state = 'reserved';

-- Refunds of orders' charges, one row per Stripe refund.
CREATE TABLE order_refunds (
    id          text PRIMARY KEY,
    order_id    uuid NOT NULL REFERENCES orders (id),
    amount      bigint NOT NULL CHECK (amount >= 0),
    currency    text NOT NULL,
    status      text NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX order_refunds_order_idx ON order_refunds (order_id);

-- What an access provider was asked to give an order's buyer, as
-- access_grants does for purchases: one GitHub grant per order and account
-- (every GitHub product opens the one repository), one webhook grant per
-- order and product (product_key '' for GitHub).
CREATE TABLE order_grants (
    id              bigserial PRIMARY KEY,
    order_id        uuid NOT NULL REFERENCES orders (id),
    provider        text NOT NULL CHECK (provider IN ('github', 'webhook')),
    product_key     text NOT NULL DEFAULT '',
    github_user_id  bigint,
    github_login    text,
    invitation_id   bigint,
    preexisting     boolean NOT NULL DEFAULT false,
    state           text NOT NULL CHECK (state IN ('pending', 'granted', 'revoked')),
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    CHECK ((provider = 'github') = (github_user_id IS NOT NULL)),
    CHECK (provider = 'webhook' OR product_key = '')
);
CREATE UNIQUE INDEX order_grants_key ON order_grants (order_id, provider, product_key, (coalesce(github_user_id, 0)));
CREATE INDEX order_grants_github_user_idx ON order_grants (github_user_id)
    WHERE github_user_id IS NOT NULL AND state IN ('pending', 'granted');
