"""The signing engine: pyHanko orchestration, the direct writer, cached-DER CMS,
the PDF tail reader, validation."""
