"""A faithful fake of the parts of A1111 v1.10.1's `modules` package the extension uses.

Same module paths, names and signatures as the real ones (each file cites its original);
behaviour is reduced to what a test can observe. Tests put tests/fake_webui on sys.path.
"""
