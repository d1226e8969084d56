"""The memory "protocol" as values: a `Post` is its wire format, and `translate` turns
posts into core events and items into posts. Sans-I/O, as every adapter's proto/ is."""
