export { writeReport, renderReport, readReportData, readStagesReportData, type ReportData, type ReportRun } from './render';
