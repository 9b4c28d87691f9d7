{{- define "signet.labels" -}}
app.kubernetes.io/part-of: signet
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "signet.operatorLabels" -}}
app.kubernetes.io/name: signet-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Refuse a retention below the statutory minimum when rendering, before anything reaches the cluster. */}}
{{- define "signet.checkRetention" -}}
{{- $years := int (default 10 .years) -}}
{{- if lt $years 5 -}}
{{- fail (printf "%s: retention of %d years is below the statutory minimum of 5 years" .what $years) -}}
{{- end -}}
{{- end -}}
