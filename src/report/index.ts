export { writeReport, renderReport, readReportData, readStagesReportData, type ReportData, type ReportRun } from './render';
export { imageGridPng, writeImageGrid, type ImageGridOptions } from './image-grid';
