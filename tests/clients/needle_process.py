"""A real `needle serve` process for the client tests: started with the given
arguments (ports picked by the OS), its URLs read from its log lines."""

import os
import re
import subprocess
import threading


class NeedleProcess:
    def __init__(self, binary, args):
        self.log = []
        self.native_url = None
        self.qdrant_url = None
        self.proc = subprocess.Popen(
            [binary, "serve", "--http", "127.0.0.1:0", "--qdrant-http", "127.0.0.1:0", "--backend", "cpu", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "NO_COLOR": "1", "RUST_LOG": "info"},
        )
        ready = threading.Event()

        def read():
            for line in self.proc.stdout:
                self.log.append(line)
                m = re.search(r"qdrant-compatible API listening on (http://\S+)", line)
                if m:
                    self.qdrant_url = m.group(1)
                elif self.native_url is None:
                    m = re.search(r"listening on (http://\S+)", line)
                    if m:
                        self.native_url = m.group(1)
                if self.native_url and self.qdrant_url:
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(120):
            self.stop()
            raise RuntimeError("needle did not start:\n" + "".join(self.log[-50:]))

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
