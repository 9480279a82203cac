#!/usr/bin/env python3
"""The untimed parts of bench/ship.sh, with boto3 against the local moto.

    ship_helper.py token FILE                      an OIDC token moto's STS accepts
    ship_helper.py role NAME                       the functions' execution role; prints its ARN
    ship_helper.py setup REPO FUNCTION ROLE_ARN    repository, function (version 1), alias live -> 1
    ship_helper.py check FUNCTION DIGEST           alias live serves a new version of DIGEST
    ship_helper.py cleanup REPO FUNCTION           delete what setup made
    ship_helper.py unrole NAME                     delete what role made
    ship_helper.py hoist-stages JSON STAMPS T0 T1  hoist's stage durations, one "stage seconds" a line

What the platform team sets up once (repository, function, alias) is set up
here for every run, with names of the run's own, so every run is cold. The
time of all this is not measured.
"""
import base64, hashlib, hmac, json, os, sys, time

REGION = os.environ.get("AWS_REGION", "us-east-1")


def client(service):
    import boto3  # only the subcommands that talk to moto need it

    return boto3.client(service, region_name=REGION)


def token(path):
    # moto's STS does not check signatures; the claims are what GitHub's look like.
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    now = int(time.time())
    claims = {"iss": "https://token.actions.githubusercontent.com", "aud": "sts.amazonaws.com",
              "sub": "repo:acme/app:ref:refs/heads/main", "iat": now, "exp": now + 3600}
    msg = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
    sig = b64(hmac.new(os.urandom(32), msg.encode(), hashlib.sha256).digest())
    with open(path, "w") as f:
        f.write(msg + "." + sig)


def role(name):
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                     "Action": "sts:AssumeRole"}]}
    print(client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"])


def setup(repo, fn, role_arn):
    ecr, lam = client("ecr"), client("lambda")
    # No scan on push: moto scans only when asked, and both pipelines ask.
    uri = ecr.create_repository(repositoryName=repo)["repository"]["repositoryUri"]
    lam.create_function(FunctionName=fn, Role=role_arn, PackageType="Image", Architectures=["x86_64"],
                        Code={"ImageUri": f"{uri}@sha256:{'0' * 64}"})
    version = lam.publish_version(FunctionName=fn)["Version"]
    lam.create_alias(FunctionName=fn, Name="live", FunctionVersion=version)


def check(fn, digest):
    lam = client("lambda")
    alias = lam.get_alias(FunctionName=fn, Name="live")
    version = alias["FunctionVersion"]
    uri = lam.get_function(FunctionName=fn, Qualifier=version)["Code"]["ImageUri"]
    if version == "1" or not uri.endswith("@" + digest) or alias.get("RoutingConfig", {}).get("AdditionalVersionWeights"):
        sys.exit(f"alias live of {fn} serves version {version} ({uri}, routing {alias.get('RoutingConfig')}), "
                 f"not a new version of {digest}")


def cleanup(repo, fn):
    client("lambda").delete_function(FunctionName=fn)
    client("ecr").delete_repository(repositoryName=repo, force=True)


def unrole(name):
    client("iam").delete_role(RoleName=name)


def hoist_stages(report_path, stamps_path, t0, t1):
    """Where hoist's time went. push, gate and deploy seconds are hoist's own
    (its JSON report); the splits inside them and the time before the push
    (auth, then ECR login) come from the moments its progress lines reached stderr (stamped by the
    bench as they arrived), because hoist reports no finer timings."""
    with open(report_path) as f:
        report = json.load(f)
    stamps = []
    with open(stamps_path) as f:
        for line in f:
            at, _, text = line.rstrip("\n").partition("\t")
            stamps.append((float(at), text))

    def seen(what, test):
        for at, text in stamps:
            if test(text):
                return at
        sys.exit(f"hoist's log has no line {what} any more: bench/ship.sh needs updating (log: {stamps_path})")

    t0, t1 = float(t0), float(t1)
    authenticated = seen("'authenticated as …'", lambda t: t.startswith("authenticated as "))
    pushing = seen("'pushing …'", lambda t: t.startswith("pushing "))
    waiting = seen("'gate: …, waiting up to …'", lambda t: t.startswith("gate: ") and ", waiting up to " in t)
    deploying = seen("'deploying …'", lambda t: t.startswith("deploying "))
    published = seen("'published version …'", lambda t: t.startswith("published version "))
    pushed = pushing + report["push"]["seconds"]
    gated = pushed + report["gate"]["seconds"]
    deployed = gated + report["deploy"]["seconds"]
    stages = [
        ("auth", authenticated - t0),
        ("ecr-login", pushing - authenticated),
        ("push", pushed - pushing),
        ("visible", waiting - pushed),
        ("scan", gated - waiting),
        ("preflight", deploying - gated),
        ("update-publish", published - deploying),
        ("alias", deployed - published),
        ("finish", t1 - deployed),
    ]
    for name, seconds in stages:
        print(f"{name} {max(seconds, 0.0):.3f}")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"token": token, "role": role, "setup": setup, "check": check, "cleanup": cleanup, "unrole": unrole,
     "hoist-stages": hoist_stages}[cmd](*args)
