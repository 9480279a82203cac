"""The glue between the local registry and moto.

moto implements ECR's API but not its registry endpoint, so images pushed to
the local Distribution registry would be invisible to DescribeImages,
StartImageScan and friends. The registry sends a notification for every push;
for each manifest pushed, this fetches the exact manifest bytes back from the
registry and calls moto's PutImage with them and the registry's digest (moto
would compute a different digest if it were not given one).
"""
import argparse
import base64
import json
import logging
import ssl
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3

MANIFEST_TYPES = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--moto", required=True)
    ap.add_argument("--registry", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--password", required=True)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    ecr = boto3.client("ecr", endpoint_url=args.moto, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    tls = ssl.create_default_context(cafile=args.ca)
    auth = "Basic " + base64.b64encode(f"AWS:{args.password}".encode()).decode()

    def fetch_manifest(repo, digest):
        req = urllib.request.Request(f"{args.registry}/v2/{repo}/manifests/{digest}",
                                     headers={"Authorization": auth, "Accept": ", ".join(sorted(MANIFEST_TYPES))})
        with urllib.request.urlopen(req, context=tls, timeout=10) as res:
            return res.read(), res.headers.get("Content-Type")

    def mirror(event):
        target = event.get("target", {})
        if event.get("action") != "push" or target.get("mediaType") not in MANIFEST_TYPES:
            return
        repo, digest, tag = target["repository"], target["digest"], target.get("tag")
        body, media_type = fetch_manifest(repo, digest)
        params = dict(repositoryName=repo, imageManifest=body.decode(), imageDigest=digest,
                      imageManifestMediaType=media_type or target["mediaType"])
        if tag:
            params["imageTag"] = tag
        try:
            ecr.put_image(**params)
            logging.info("mirrored %s@%s%s", repo, digest, f" tag {tag}" if tag else "")
        except ecr.exceptions.RepositoryNotFoundException:
            logging.info("skipped %s@%s: no such repository in moto", repo, digest)
        except Exception as e:  # moto refusing (e.g. an immutable tag) must not stall the registry
            logging.info("moto refused %s@%s%s: %s", repo, digest, f" tag {tag}" if tag else "", e)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                for event in json.loads(body).get("events", []):
                    try:
                        mirror(event)
                    except Exception as e:
                        logging.info("could not mirror event %s: %s", event.get("id"), e)
            finally:
                # Always 200: a refusal would make the registry retry forever.
                self.send_response(200)
                self.end_headers()

        def log_message(self, *a):
            pass

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
