{{/* vim: set filetype=mustache: */}}

{{/*
The chart name, truncated to 63 characters (the DNS label limit of Kubernetes names).
*/}}
{{- define "sundial.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The full name: the base of every object name. The release name alone when it already contains the
chart name; truncated to 63 characters.
*/}}
{{- define "sundial.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
A component's object name: "<fullname>-<component>", still within 63 characters.
Usage: include "sundial.componentName" (list . "webhook")
*/}}
{{- define "sundial.componentName" -}}
{{- $top := index . 0 -}}
{{- $component := index . 1 -}}
{{- $suffix := printf "-%s" $component -}}
{{- printf "%s%s" (include "sundial.fullname" $top | trunc (int (sub 63 (len $suffix))) | trimSuffix "-") $suffix -}}
{{- end -}}

{{/*
Chart name and version, as used by the helm.sh/chart label.
*/}}
{{- define "sundial.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The ServiceAccount the operator runs as.
*/}}
{{- define "sundial.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sundial.fullname" .) .Values.serviceAccount.name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
Labels common to every object. Usage: include "sundial.labels" (list . "operator")
*/}}
{{- define "sundial.labels" -}}
{{- $top := index . 0 -}}
helm.sh/chart: {{ include "sundial.chart" $top }}
{{ include "sundial.selectorLabels" . }}
app.kubernetes.io/version: {{ $top.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $top.Release.Service }}
app.kubernetes.io/part-of: sundial
{{- end -}}

{{/*
Selector labels of a component. Usage: include "sundial.selectorLabels" (list . "operator")
*/}}
{{- define "sundial.selectorLabels" -}}
{{- $top := index . 0 -}}
app.kubernetes.io/name: {{ include "sundial.name" $top }}
app.kubernetes.io/instance: {{ $top.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/*
The operator image reference: repository@digest, or repository:tag (tag defaults to appVersion).
*/}}
{{- define "sundial.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
"true" when the run history is a database server (not the embedded SQLite file).
*/}}
{{- define "sundial.databaseIsServer" -}}
{{- if or .Values.database.existingSecret .Values.dev.postgresql.enabled -}}
true
{{- else if and .Values.database.url (not (hasPrefix "sqlite" .Values.database.url)) -}}
true
{{- end -}}
{{- end -}}

{{/*
"true" when the run history is the bundled dev PostgreSQL (which only exists once the release does).
*/}}
{{- define "sundial.devPostgresInUse" -}}
{{- if and .Values.dev.postgresql.enabled (not .Values.database.existingSecret) (not .Values.database.url) -}}
true
{{- end -}}
{{- end -}}

{{/*
"true" when Redis is configured (shared leases between replicas).
*/}}
{{- define "sundial.redisConfigured" -}}
{{- if or .Values.redis.existingSecret .Values.redis.url .Values.dev.redis.enabled -}}
true
{{- end -}}
{{- end -}}

{{/*
The number of operator replicas: replicaCount when replicas can share state, else 1.
*/}}
{{- define "sundial.replicas" -}}
{{- if and (include "sundial.databaseIsServer" .) (include "sundial.redisConfigured" .) -}}
{{- .Values.replicaCount -}}
{{- else -}}
{{- min 1 .Values.replicaCount -}}
{{- end -}}
{{- end -}}

{{/*
The SUNDIAL_DATABASE_URL environment variable (a list item).
*/}}
{{- define "sundial.databaseEnv" -}}
- name: SUNDIAL_DATABASE_URL
{{- if .Values.database.existingSecret }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret }}
      key: {{ .Values.database.existingSecretKey }}
{{- else if .Values.database.url }}
  value: {{ .Values.database.url | quote }}
{{- else if .Values.dev.postgresql.enabled }}
  value: {{ printf "postgresql+psycopg://sundial:%s@%s:5432/sundial" (.Values.dev.postgresql.password | urlquery) (include "sundial.componentName" (list . "postgresql")) | quote }}
{{- else }}
  value: "sqlite:////var/lib/sundial/sundial.db"
{{- end }}
{{- end -}}

{{/*
The SUNDIAL_REDIS_URL environment variable (a list item), or nothing when Redis is not configured.
*/}}
{{- define "sundial.redisEnv" -}}
{{- if .Values.redis.existingSecret }}
- name: SUNDIAL_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.existingSecretKey }}
{{- else if .Values.redis.url }}
- name: SUNDIAL_REDIS_URL
  value: {{ .Values.redis.url | quote }}
{{- else if .Values.dev.redis.enabled }}
- name: SUNDIAL_REDIS_URL
  value: {{ printf "redis://%s:6379/0" (include "sundial.componentName" (list . "redis")) | quote }}
{{- end }}
{{- end -}}

{{/*
Webhook object names.
*/}}
{{- define "sundial.webhookName" -}}
{{- include "sundial.componentName" (list . "webhook") -}}
{{- end -}}
{{- define "sundial.webhookTLSSecretName" -}}
{{- include "sundial.componentName" (list . "webhook-tls") -}}
{{- end -}}

{{/*
The namespaced RBAC rules of the operator: what it needs in every namespace it watches.
*/}}
{{- define "sundial.namespacedRules" -}}
# Watch CronConfigs; patch them (kopf bookkeeping) and write their status.
- apiGroups: [sundial.io]
  resources: [cronconfigs]
  verbs: [get, list, watch, patch]
- apiGroups: [sundial.io]
  resources: [cronconfigs/status]
  verbs: [get, patch, update]
# Events about CronConfigs and their runs.
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
# headersFrom / connection Secrets, only ever in the CronConfig's own namespace.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
# template jobs: one Kubernetes Job per run.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete]
{{- end -}}
