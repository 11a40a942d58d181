{{/*
Names and labels as `egress-guard manifests` makes them (webhook/deploy/objects.py), plus Helm's
own labels on each object's metadata (never in a selector or a pod template).
*/}}
{{- define "eg.name" -}}egress-guard{{- end -}}

{{- define "eg.selectorLabels" -}}
app.kubernetes.io/name: {{ include "eg.name" .root }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end -}}

{{/* The labels of a pod template: the same as manifests' (selector plus part-of). */}}
{{- define "eg.podLabels" -}}
{{ include "eg.selectorLabels" . }}
app.kubernetes.io/part-of: egress-guard
{{- end -}}

{{/* An object's labels. component "" leaves the component label out (objects both use). */}}
{{- define "eg.labels" -}}
{{ include "eg.podLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "eg.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/*
The policy file, parsed: a JSON object (use `include "eg.policy" . | fromJson`). Only what the
deployment is rendered from is read here; the server validates the whole file at start-up.
*/}}
{{- define "eg.policy" -}}
{{- $policy := fromYaml .Values.policy -}}
{{- if hasKey $policy "Error" -}}
{{- fail (printf "values.policy is not a YAML mapping (the policy file's text): %s" $policy.Error) -}}
{{- end -}}
{{- toJson $policy -}}
{{- end -}}

{{- define "eg.labelPrefix" -}}
{{- $policy := include "eg.policy" . | fromJson -}}
{{- if hasKey $policy "labelPrefix" }}{{ $policy.labelPrefix }}{{ else }}egress-guard.io{{ end -}}
{{- end -}}

{{/* Namespaces the webhooks never see: the system ones, egress-guard's own, the exempt (JSON). */}}
{{- define "eg.excludedNamespaces" -}}
{{- $policy := include "eg.policy" . | fromJson -}}
{{- $system := list "kube-system" "kube-public" "kube-node-lease" -}}
{{- $exempt := concat $system (list "egress-guard") -}}
{{- if hasKey $policy "exemptNamespaces" }}{{ $exempt = $policy.exemptNamespaces | default list }}{{ end -}}
{{- concat $system (list .Release.Namespace) $exempt | uniq | sortAlpha | toJson -}}
{{- end -}}

{{/* An address range as manifests writes it: a bare address is that address alone. */}}
{{- define "eg.cidr" -}}
{{- if contains "/" . }}{{ . }}{{ else if contains ":" . }}{{ . }}/128{{ else }}{{ . }}/32{{ end -}}
{{- end -}}

{{/*
The workload kinds the webhook reviews (`Policy.reviewed_kinds`): the policy's workloadKinds and
the built-in ones, as "group version resource" strings (JSON list).
*/}}
{{- define "eg.reviewedKinds" -}}
{{- $policy := include "eg.policy" . | fromJson -}}
{{- $kinds := list "apps v1 deployments" "apps v1 statefulsets" "apps v1 daemonsets" "batch v1 cronjobs" "batch v1 jobs" " v1 replicationcontrollers" "apps v1 replicasets" " v1 pods" -}}
{{- range $policy.workloadKinds | default list -}}
{{- $kinds = append $kinds (printf "%s %s %s" .group .version .resource) -}}
{{- end -}}
{{- toJson $kinds -}}
{{- end -}}

{{- define "eg.serviceAccountUser" -}}
system:serviceaccount:{{ .namespace }}:{{ .name }}
{{- end -}}

{{/* CEL kept in files/cel (what webhook/deploy/match_conditions.py writes), without its newline. */}}
{{- define "eg.cel" -}}
{{- .root.Files.Get (printf "files/cel/%s.cel" .name) | trimSuffix "\n" -}}
{{- end -}}
