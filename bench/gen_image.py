#!/usr/bin/env python3
"""Write an OCI image layout of random, incompressible layers for benchmarks.

    gen_image.py DIR --layers 8 --total-mib 1024 [--gzip]

Each layer is an uncompressed tar (application/vnd.oci.image.layer.v1.tar)
holding one file of random bytes, so generating a GiB takes seconds and both
tools push exactly the same bytes. The image is named `bench` in index.json.
With --gzip the layers are gzip-compressed tars (…layer.v1.tar+gzip), as
Lambda requires (it refuses uncompressed layers); random bytes do not shrink,
so the sizes stay. Every call writes new random bytes: a new image.
"""
import argparse, gzip, hashlib, io, json, os, shutil, tarfile

def blob(root, data_or_path, media_type):
    if isinstance(data_or_path, bytes):
        digest = hashlib.sha256(data_or_path).hexdigest()
        path = os.path.join(root, "blobs/sha256", digest)
        with open(path, "wb") as f:
            f.write(data_or_path)
        size = len(data_or_path)
    else:
        h = hashlib.sha256()
        with open(data_or_path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digest = h.hexdigest()
        os.replace(data_or_path, os.path.join(root, "blobs/sha256", digest))
        size = os.path.getsize(os.path.join(root, "blobs/sha256", digest))
    return {"mediaType": media_type, "digest": "sha256:" + digest, "size": size}

class RandomFile(io.RawIOBase):
    def __init__(self, n):
        self.left = n
    def readable(self):
        return True
    def readinto(self, b):
        n = min(len(b), self.left, 1 << 20)
        if n == 0:
            return 0
        b[:n] = os.urandom(n)
        self.left -= n
        return n

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--total-mib", type=int, default=1024)
    ap.add_argument("--gzip", action="store_true", help="gzip-compressed layers (as Lambda needs)")
    a = ap.parse_args()
    os.makedirs(os.path.join(a.dir, "blobs/sha256"), exist_ok=True)
    with open(os.path.join(a.dir, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    per = a.total_mib * (1 << 20) // a.layers
    layers, diff_ids = [], []
    for i in range(a.layers):
        tmp = os.path.join(a.dir, f"layer-{i}.tmp")
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as t:
            info = tarfile.TarInfo(f"data-{i}.bin")
            info.size = per
            t.addfile(info, io.BufferedReader(RandomFile(per), 1 << 20))
        if a.gzip:
            # The config lists the uncompressed tar's digest (diff_id); the
            # manifest the compressed blob's.
            diff_ids.append(blob(a.dir, tmp, "")["digest"])
            tar = os.path.join(a.dir, "blobs/sha256", diff_ids[-1].split(":")[1])
            with open(tar, "rb") as src, gzip.open(tmp, "wb", compresslevel=1) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.remove(tar)
            layers.append(blob(a.dir, tmp, "application/vnd.oci.image.layer.v1.tar+gzip"))
        else:
            layers.append(blob(a.dir, tmp, "application/vnd.oci.image.layer.v1.tar"))
            diff_ids.append(layers[-1]["digest"])
    config = blob(a.dir, json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/true"]},
                                     "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode(),
                  "application/vnd.oci.image.config.v1+json")
    manifest = blob(a.dir, json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                       "config": config, "layers": layers}).encode(),
                    "application/vnd.oci.image.manifest.v1+json")
    manifest["annotations"] = {"org.opencontainers.image.ref.name": "bench"}
    with open(os.path.join(a.dir, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [manifest]}, f)

if __name__ == "__main__":
    main()
