"""The glue between the local registry and moto (started by `localenv up`).

moto implements ECR's API but not its registry endpoint, so images pushed to
the local Distribution registry would be invisible to DescribeImages,
BatchGetImage, StartImageScan and friends. The registry POSTs a notification
envelope for every push; for each manifest pushed, this fetches the exact
manifest bytes back from the registry and calls moto's PutImage with them and
the registry's digest (moto computes a wrong digest when it is not given one).

Envelopes are answered 200 at once and mirrored in order by one worker
thread: a refusal or a slow answer would make the registry retry the same
envelope, and moto refusing an image (no such repository, an immutable tag)
is not something a retry can fix.
"""
import argparse
import base64
import hashlib
import json
import logging
import queue
import ssl
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
from botocore.config import Config

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--moto", required=True, help="moto's endpoint, http://127.0.0.1:PORT")
    ap.add_argument("--registry", required=True, help="the registry, https://127.0.0.1:PORT")
    ap.add_argument("--ca", required=True, help="the CA the registry's certificate chains to")
    ap.add_argument("--user", default="AWS")
    ap.add_argument("--password", required=True)
    ap.add_argument("--verbose", action="store_true", help="also log the events that are ignored")
    args = ap.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    ecr = boto3.client(
        "ecr", endpoint_url=args.moto, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
        # moto is local: fail fast rather than stall the queue on retries.
        config=Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=30),
    )
    auth = "Basic " + base64.b64encode(f"{args.user}:{args.password}".encode()).decode()

    def fetch_manifest(repo, digest):
        req = urllib.request.Request(
            f"{args.registry}/v2/{repo}/manifests/{digest}",
            headers={"Authorization": auth, "Accept": ", ".join(MANIFEST_TYPES)})
        # The CA is read per request: `localenv up` may have made a new one
        # (after a lost certificate) while this process kept running.
        tls = ssl.create_default_context(cafile=args.ca)
        with urllib.request.urlopen(req, context=tls, timeout=10) as res:
            return res.read(), res.headers.get("Content-Type")

    def mirror(event):
        target = event.get("target") or {}
        action, media_type = event.get("action"), target.get("mediaType")
        if action != "push" or media_type not in MANIFEST_TYPES:
            logging.debug("ignored %s %s %s@%s", action, media_type, target.get("repository"), target.get("digest"))
            return
        repo, digest, tag = target["repository"], target["digest"], target.get("tag")
        what = f"{repo}@{digest}" + (f" tag {tag}" if tag else "")
        body, served_type = fetch_manifest(repo, digest)
        algo, _, hexdigest = digest.partition(":")
        if algo == "sha256" and hashlib.sha256(body).hexdigest() != hexdigest:
            logging.info("skipped %s: the registry served bytes of another digest", what)
            return
        # Asked first because moto's PutImage into a missing repository is an
        # HTTP 500 with a traceback in moto.log, not RepositoryNotFoundException.
        try:
            ecr.describe_repositories(repositoryNames=[repo])
        except ecr.exceptions.RepositoryNotFoundException:
            logging.info("skipped %s: no such repository in moto", what)
            return
        params = dict(repositoryName=repo, imageManifest=body.decode(), imageDigest=digest,
                      imageManifestMediaType=served_type or media_type)
        if tag:
            params["imageTag"] = tag
        try:
            ecr.put_image(**params)
            logging.info("mirrored %s", what)
        except ecr.exceptions.ImageAlreadyExistsException as e:
            # moto refuses the same manifest+tag twice even where ECR accepts it
            # (mutable repositories); an immutable tag on another image is a refusal.
            if tag and tag in tags_of(repo, digest):
                logging.info("already in moto: %s", what)
            else:
                logging.info("moto refused %s: %s", what, e)
        except Exception as e:
            logging.info("moto refused %s: %s", what, e)

    def tags_of(repo, digest):
        try:
            images = ecr.describe_images(repositoryName=repo, imageIds=[{"imageDigest": digest}])["imageDetails"]
        except Exception:
            return []
        return [t for image in images for t in image.get("imageTags") or []]

    envelopes = queue.Queue()

    def worker():
        while True:
            body = envelopes.get()
            logging.debug("envelope: %s", body.decode(errors="replace"))
            try:
                events = json.loads(body).get("events") or []
            except ValueError as e:
                logging.info("not a notification envelope (%s): %.200r", e, body)
                continue
            for event in events:
                try:
                    mirror(event)
                except Exception as e:  # the registry unreachable, a manifest gone meanwhile...
                    logging.info("could not mirror event %s (%s): %s", event.get("id"), event.get("target"), e)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            # /health: localenv's readiness check; also says how far behind we are.
            ok = self.path == "/health"
            body = json.dumps({"queued": envelopes.qsize()}).encode() if ok else b""
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            envelopes.put(body)
            # Always 200: a refusal would make the registry retry forever.
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    threading.Thread(target=worker, name="mirror", daemon=True).start()
    ThreadingHTTPServer.request_queue_size = 64  # the default backlog of 5 is for toys
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    logging.info("listening on 127.0.0.1:%d; mirroring %s pushes into %s", args.port, args.registry, args.moto)
    server.serve_forever()


if __name__ == "__main__":
    main()
