"""anywidget views: one class per view, all built on widgets.base.LmscopeWidget."""
