export { writeReport, renderReport, readReportData, type ReportData, type ReportRun } from './render';
