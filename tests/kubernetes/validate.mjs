// Offline validation of the Kubernetes manifests (deploy/kubernetes): every object against the
// Kubernetes API's JSON schemas (kubernetes-models, pinned in package-lock.json), then kooisv's
// own rules: every container with readiness and liveness probes, resource requests and limits,
// a non-root read-only security context; every process's Deployment with a PodDisruptionBudget;
// the services' Services headless; autoscalers for the gateway and order; a default-deny
// NetworkPolicy; the kustomization naming every file. Prints one line per problem.
//   node validate.mjs <manifest dir>     exit 0 valid, 1 not
import fs from "node:fs";
import path from "node:path";
import { parseAllDocuments } from "yaml";

const dir = process.argv[2];
let problems = 0;
const fail = (where, msg) => {
  console.log(`k8s: FAIL: ${where}: ${msg}`);
  problems++;
};
const objects = [];
const files = fs.readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort();
for (const f of files) {
  for (const doc of parseAllDocuments(fs.readFileSync(path.join(dir, f), "utf8"))) {
    if (doc.errors.length) fail(f, doc.errors[0].message);
    const obj = doc.toJS();
    if (obj) objects.push({ file: f, obj });
  }
}

// 1. the API schemas
for (const { file, obj } of objects) {
  if (obj.kind === "Kustomization") continue;
  const where = `${file} ${obj.kind}/${obj.metadata?.name}`;
  const api = obj.apiVersion && obj.apiVersion.includes("/") ? obj.apiVersion : "v1";
  let Model;
  try {
    Model = (await import(`kubernetes-models/${api}/${obj.kind}`))[obj.kind];
  } catch (e) {
    fail(where, `unknown apiVersion/kind ${obj.apiVersion} ${obj.kind}`);
    continue;
  }
  try {
    new Model(obj).validate();
  } catch (e) {
    fail(where, String(e.message).split("\n").slice(0, 3).join(" "));
  }
}

// 2. kooisv's rules
const byKind = (k) => objects.filter((o) => o.obj.kind === k);
const workloads = [...byKind("Deployment"), ...byKind("Job")];
for (const { file, obj } of workloads) {
  const pod = obj.spec?.template?.spec ?? {};
  const where = `${file} ${obj.kind}/${obj.metadata.name}`;
  if (pod.securityContext?.runAsNonRoot !== true) fail(where, "pod securityContext.runAsNonRoot is not true");
  for (const c of [...(pod.initContainers ?? []), ...(pod.containers ?? [])]) {
    const sc = c.securityContext ?? {};
    if (sc.readOnlyRootFilesystem !== true) fail(where, `${c.name}: readOnlyRootFilesystem is not true`);
    if (sc.allowPrivilegeEscalation !== false) fail(where, `${c.name}: allowPrivilegeEscalation is not false`);
    if (!(sc.capabilities?.drop ?? []).includes("ALL")) fail(where, `${c.name}: capabilities not dropped`);
    for (const r of ["requests", "limits"])
      for (const k of ["cpu", "memory"])
        if (!c.resources?.[r]?.[k]) fail(where, `${c.name}: no resources.${r}.${k}`);
    if (obj.kind === "Deployment" && (!c.readinessProbe || !c.livenessProbe))
      fail(where, `${c.name}: readiness and liveness probes required`);
    for (const e of c.env ?? [])
      if (/(KEY|PASSWORD|_SK|_AK|DSN|TOKENS?)$/.test(e.name) && e.value)
        fail(where, `${c.name}: secret ${e.name} given inline (use ${e.name}_FILE)`);
  }
}
for (const { obj } of byKind("Deployment")) {
  const name = obj.metadata.name;
  if (!byKind("PodDisruptionBudget").some((p) => p.obj.spec?.selector?.matchLabels?.["app.kubernetes.io/name"] === name))
    fail(`Deployment/${name}`, "no PodDisruptionBudget");
  const role = obj.spec.template.metadata.labels["kooisv.io/role"];
  const svc = byKind("Service").find((s) => s.obj.metadata.name === name);
  if (role === "service" && svc?.obj.spec?.clusterIP !== "None")
    fail(`Service/${name}`, "a ZeroMQ service's Service must be headless (clusterIP: None)");
}
for (const name of ["gateway", "order"])
  if (!byKind("HorizontalPodAutoscaler").some((h) => h.obj.spec?.scaleTargetRef?.name === name))
    fail(`HorizontalPodAutoscaler/${name}`, "missing");
if (!byKind("NetworkPolicy").some((n) => Object.keys(n.obj.spec?.podSelector ?? {}).length === 0 &&
    (n.obj.spec?.policyTypes ?? []).includes("Ingress") && !n.obj.spec.ingress))
  fail("NetworkPolicy", "no default deny");
const lb = byKind("Service").filter((s) => s.obj.spec?.type === "LoadBalancer");
if (!lb.some((s) => s.obj.spec.ports.some((p) => p.port === 8443))) fail("Service", "no LoadBalancer for 8443");
const kust = byKind("Kustomization")[0];
if (!kust) fail("kustomization.yaml", "missing");
else {
  const listed = new Set(kust.obj.resources ?? []);
  for (const f of files) if (f !== "kustomization.yaml" && !listed.has(f)) fail("kustomization.yaml", `does not list ${f}`);
  for (const f of listed) if (!files.includes(f)) fail("kustomization.yaml", `lists ${f}, which is not there`);
}
console.log(problems ? `k8s: ${problems} problem(s) in ${objects.length} objects` : `k8s: ${objects.length} objects valid`);
process.exit(problems ? 1 : 0);
