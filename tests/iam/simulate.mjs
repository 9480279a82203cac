// Evaluates requests against IAM policies with @cloud-copilot/iam-simulate
// (a maintained evaluator of identity, resource and trust policies, with
// AWS's Service Authorization Reference as its data: it refuses an unknown
// action, a resource ARN of the wrong type for the action, an invalid
// policy). tests/iam.rs runs it; localenv/localenv installs it, pinned, into
// $HOIST_LOCALENV_DIR/node, which is where it is loaded from.
//
// stdin: {
//   "policies": { NAME: { "identity": POLICY, "resource": POLICY? } },
//   "requests": [ { "policies": NAME, "action": "ecr:PutImage",
//                   "resource": "arn:…" | "*", "account": "123456789012",
//                   "principal": "arn:aws:sts::…:assumed-role/…",
//                   "context": { KEY: VALUE } } ]
// }
// stdout: one JSON array, a decision per request, in order:
//   { "decision": "Allowed" | "ImplicitlyDenied" | "ExplicitlyDenied" | "Error",
//     "allowedBy": [ { "statement": SID or 1-based index,
//                      "actions": [patterns that matched],
//                      "resources": [patterns that matched] } ],
//     "error": "…" }
import { createRequire } from 'node:module'
import { join } from 'node:path'

const dir = process.env.HOIST_LOCALENV_DIR
if (!dir) {
  console.error('HOIST_LOCALENV_DIR is not set')
  process.exit(2)
}
let simulate
try {
  simulate = createRequire(join(dir, 'node', 'package.json'))('@cloud-copilot/iam-simulate')
} catch (e) {
  console.error(
    `@cloud-copilot/iam-simulate is not installed in ${dir}/node (${e.message}): run localenv/localenv up`
  )
  process.exit(2)
}

const chunks = []
for await (const c of process.stdin) chunks.push(c)
const input = JSON.parse(Buffer.concat(chunks).toString('utf8'))

const list = (x) => (x === undefined ? [] : Array.isArray(x) ? x : [x])

// The decision without input validation, and the identity statements'
// (action, resource) pairs that allow the request on their own.
function unvalidated(simulation) {
  const decision = simulate.runUnsafeSimulation(simulation, {})
  const allowedBy = []
  if (decision === 'Allowed') {
    const statements = list(simulation.identityPolicies[0].policy.Statement)
    statements.forEach((st, i) => {
      if (st.Effect !== 'Allow' || !st.Action || !st.Resource) return
      const hit = { statement: st.Sid ?? String(i + 1), actions: new Set(), resources: new Set() }
      for (const action of list(st.Action)) {
        for (const resource of list(st.Resource)) {
          const one = { Version: '2012-10-17', Statement: [{ ...st, Action: action, Resource: resource }] }
          const alone = { ...simulation, identityPolicies: [{ name: 'one', policy: one }] }
          if (simulate.runUnsafeSimulation(alone, {}) === 'Allowed') {
            hit.actions.add(action)
            hit.resources.add(resource)
          }
        }
      }
      if (hit.actions.size > 0) {
        allowedBy.push({ ...hit, actions: [...hit.actions], resources: [...hit.resources] })
      }
    })
  }
  return { decision, allowedBy }
}

const out = []
for (const r of input.requests) {
  const p = input.policies[r.policies]
  if (!p) {
    out.push({ decision: 'Error', error: `no policies named ${r.policies}` })
    continue
  }
  const simulation = {
    identityPolicies: [{ name: r.policies, policy: p.identity }],
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    request: {
      action: r.action,
      principal: r.principal,
      resource: { resource: r.resource, accountId: r.account },
      contextVariables: r.context ?? {}
    }
  }
  if (p.resource) simulation.resourcePolicy = p.resource
  const res = await simulate.runSimulation(simulation, {})
  if (res.resultType === 'error' && res.errors?.message === 'multiple.resource.types') {
    // A Lambda alias ARN and a version ARN have the same shape
    // (function:NAME:QUALIFIER), so for an action that takes either
    // (GetProvisionedConcurrencyConfig) the reference data cannot say which
    // one a request names and the validating entry point refuses. The
    // decision does not depend on it: evaluate without that validation, and
    // find what allowed it by evaluating each (statement, action, resource)
    // of the identity policy alone.
    out.push(unvalidated(simulation))
    continue
  }
  if (res.resultType === 'error') {
    out.push({ decision: 'Error', error: JSON.stringify(res.errors) })
    continue
  }
  if (res.resultType !== 'single') {
    // A resource given as a pattern: every request here names one resource.
    out.push({ decision: 'Error', error: `a ${res.resultType} result for ${r.resource}` })
    continue
  }
  const allowedBy = (res.result.analysis?.identityAnalysis?.allowStatements ?? []).map((s) => ({
    statement: s.explain.identifier,
    actions: list(s.explain.actions)
      .filter((a) => a.matches)
      .map((a) => a.action),
    resources: list(s.explain.resources)
      .filter((x) => x.matches)
      .map((x) => x.resource)
  }))
  out.push({ decision: res.overallResult, allowedBy })
}
process.stdout.write(JSON.stringify(out))
