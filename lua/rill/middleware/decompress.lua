-- rill.middleware.decompress([opts]): request bodies sent with
-- Content-Encoding gzip or deflate read decoded. Options and rules:
-- lua/rill/encoding.lua and lua/README.md.
return require("rill.encoding").decompress
