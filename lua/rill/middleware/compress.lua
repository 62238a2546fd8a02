-- rill.middleware.compress([opts]): gzip or deflate response bodies for the
-- clients that accept them. Options and rules: lua/rill/encoding.lua and
-- lua/README.md.
return require("rill.encoding").compress
