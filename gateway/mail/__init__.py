"""Mail as a reader sees it: header blocks, MIME decoding, HTML to text, addresses. Pure."""
