{{/* Prefix of every object name: fullnameOverride or the release name. */}}
{{- define "flotilla.fullname" -}}
{{- /* 44: "<fullname>-replica" names the StatefulSet, whose pods' controller-revision-hash label (name + "-" + hash) must fit 63. */ -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 44 | trimSuffix "-" -}}
{{- end -}}

{{/* Cluster name (FLOTILLA_CLUSTER). */}}
{{- define "flotilla.cluster" -}}
{{- default .Release.Name .Values.cluster -}}
{{- end -}}

{{- define "flotilla.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "flotilla.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "flotilla.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{/* NATS address: nats.url, or the bundled NATS Service. */}}
{{- define "flotilla.natsUrl" -}}
{{- if .Values.nats.url -}}
{{ .Values.nats.url }}
{{- else -}}
nats://{{ include "flotilla.fullname" . }}-nats:4222
{{- end -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "flotilla.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: flotilla
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: call with (dict "root" $ "component" "replica"). */}}
{{- define "flotilla.selectorLabels" -}}
app.kubernetes.io/name: flotilla
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
Environment shared by every Flotilla process: FLOTILLA_<SETTING> for each setting of libs/config
that the chart exposes, under the same (camelCase) value name.
*/}}
{{- define "flotilla.env" -}}
- name: FLOTILLA_CLUSTER
  value: {{ include "flotilla.cluster" . | quote }}
- name: FLOTILLA_NATS_URL
  value: {{ include "flotilla.natsUrl" . | quote }}
- name: FLOTILLA_HTTP_PORT
  value: {{ .Values.httpPort | quote }}
- name: FLOTILLA_HTTP_HOST
  value: "0.0.0.0"
- name: FLOTILLA_API_PORT
  value: {{ .Values.apiPort | quote }}
- name: FLOTILLA_LEASE_BACKEND
  value: kubernetes
{{- range $key := list "mode" "syncFollowers" "syncTimeoutMs" "syncPolicy" "leaseTtlMs" "leaseRenewMs" "heartbeatIntervalMs" "logRetentionEntries" "logRetentionBytes" "logRetentionMs" "snapshotChunkBytes" "streamBatchMs" "failureTimeoutMs" "statementTimeoutMs" "maxLagOnFailover" "monitorIntervalMs" "maxBodyBytes" "readWaitMs" "requestTimeoutMs" "logLevel" }}
- name: FLOTILLA_{{ regexReplaceAll "([A-Z])" $key "_${1}" | upper }}
  {{- $value := index $.Values $key }}
  {{- /* YAML numbers arrive as float64; print them as integers, not 2.68435456e+08. */}}
  value: {{ if kindIs "float64" $value }}{{ int64 $value | toString | quote }}{{ else }}{{ $value | toString | quote }}{{ end }}
{{- end }}
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end -}}

{{/* Probes on the process's own HTTP server. */}}
{{- define "flotilla.probes" -}}
startupProbe:
  httpGet: { path: /healthz, port: http }
  periodSeconds: 2
  failureThreshold: 60
livenessProbe:
  httpGet: { path: /healthz, port: http }
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
readinessProbe:
  httpGet: { path: /readyz, port: http }
  periodSeconds: 2
  timeoutSeconds: 2
  failureThreshold: 2
{{- end -}}

{{/* Cross-field rules that values.schema.json cannot express (the same as libs/config). */}}
{{- define "flotilla.validate" -}}
{{- if gt (mul (int .Values.leaseRenewMs) 2) (int .Values.leaseTtlMs) -}}
{{- fail (printf "leaseRenewMs (%d) must be at most half of leaseTtlMs (%d)" (int .Values.leaseRenewMs) (int .Values.leaseTtlMs)) -}}
{{- end -}}
{{- $margin := max 200 (div (int .Values.leaseTtlMs) 5) -}}
{{- if lt (sub (int .Values.leaseTtlMs) $margin) (mul (int .Values.leaseRenewMs) 2) -}}
{{- fail (printf "leaseTtlMs (%d) is too short for leaseRenewMs (%d): a renewal keeps a leader valid for leaseTtlMs minus a safety margin of %d ms, which must cover two renewal intervals" (int .Values.leaseTtlMs) (int .Values.leaseRenewMs) (int $margin)) -}}
{{- end -}}
{{- /* minus 20 ms: one turn's SQL may take the deadline + a tick of the per-turn clock (libs/config STATEMENT_TURN_SLACK_MS) */}}
{{- $budget := sub (sub (sub (int .Values.leaseTtlMs) $margin) (int .Values.leaseRenewMs)) 20 -}}
{{- if and (gt (int .Values.statementTimeoutMs) 0) (lt (int .Values.statementTimeoutMs) 50) -}}
{{- fail (printf "statementTimeoutMs (%d) must be 0 (no deadline) or at least 50 ms" (int .Values.statementTimeoutMs)) -}}
{{- end -}}
{{- if and (gt (int .Values.statementTimeoutMs) 0) (ge (int .Values.statementTimeoutMs) $budget) -}}
{{- fail (printf "statementTimeoutMs (%d) must be below %d ms (leaseTtlMs minus its safety margin minus leaseRenewMs minus 20 ms): a leader held longer by its requests can lose its lease" (int .Values.statementTimeoutMs) (int $budget)) -}}
{{- end -}}
{{- if ge (int .Values.syncTimeoutMs) (int .Values.requestTimeoutMs) -}}
{{- fail (printf "syncTimeoutMs (%d) must be below requestTimeoutMs (%d)" (int .Values.syncTimeoutMs) (int .Values.requestTimeoutMs)) -}}
{{- end -}}
{{- if lt (int .Values.syncTimeoutMs) (mul (int .Values.heartbeatIntervalMs) 2) -}}
{{- fail (printf "syncTimeoutMs (%d) must be at least twice heartbeatIntervalMs (%d)" (int .Values.syncTimeoutMs) (int .Values.heartbeatIntervalMs)) -}}
{{- end -}}
{{- if lt (int .Values.failureTimeoutMs) (mul (int .Values.heartbeatIntervalMs) 2) -}}
{{- fail (printf "failureTimeoutMs (%d) must be at least twice heartbeatIntervalMs (%d)" (int .Values.failureTimeoutMs) (int .Values.heartbeatIntervalMs)) -}}
{{- end -}}
{{- if and (gt (int .Values.apiPort) 0) (eq (int .Values.apiPort) (int .Values.httpPort)) -}}
{{- fail (printf "apiPort and httpPort are both %d: a replica serves two listeners, give them different ports" (int .Values.apiPort)) -}}
{{- end -}}
{{- if and (ne .Values.mode "async") (ge (int .Values.syncFollowers) (int .Values.replicas)) -}}
{{- fail (printf "mode %s needs syncFollowers (%d) < replicas (%d): the leader is not its own follower" .Values.mode (int .Values.syncFollowers) (int .Values.replicas)) -}}
{{- end -}}
{{- end -}}
